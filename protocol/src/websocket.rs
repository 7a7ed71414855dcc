//! RFC 6455 WebSocket framing for the server side, with no I/O.
//!
//! The [`Decoder`] is fed the bytes a client sent, as they arrive, and yields
//! whole [`Message`]s: it checks every frame header (reserved bits, opcode, the
//! client's mask, control frame rules, the 64-bit length), unmasks, reassembles
//! fragmented messages, validates text as UTF-8 and close payloads, and refuses a
//! frame or message past its size limit from the header alone, before its payload
//! is buffered. Between calls it keeps only the bytes of a frame that has not
//! arrived entirely (and a fragmented message being reassembled): a connection
//! that is idle between whole messages holds no buffer at all, so the driver can
//! read into memory it shares with other connections and decode from there.
//!
//! [`encode_frame`] and [`encode_close`] write the server's frames (unmasked,
//! never fragmented). [`encode_masked`] writes a frame as a client would, for
//! tests and fuzzing.

use thiserror::Error;

/// The largest payload of a control frame (ping, pong, close).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// The longest close reason: a control payload minus the 2-byte code.
pub const MAX_CLOSE_REASON: usize = MAX_CONTROL_PAYLOAD - 2;

/// The largest frame header: 2 bytes, an 8-byte length, a 4-byte mask.
pub const MAX_HEADER: usize = 14;

/// A frame's opcode (RFC 6455 §5.2); the others are reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    fn from_bits(bits: u8) -> Option<OpCode> {
        Some(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xa => OpCode::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xa,
        }
    }

    /// Close, ping and pong: never fragmented, at most 125 bytes.
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// A whole message from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// The client is closing: its status code and reason, if it gave one.
    Close(Option<(u16, String)>),
}

/// Why the client's bytes are not a valid WebSocket stream. The connection must
/// then be failed, with [`FrameError::close_code`] as the close frame's code.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    #[error("reserved bits set without an extension that defines them")]
    ReservedBits,
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    #[error("unmasked frame from the client")]
    Unmasked,
    #[error("fragmented control frame")]
    FragmentedControl,
    #[error("control frame payload of {0} bytes exceeds 125")]
    ControlTooLong(u64),
    #[error("64-bit payload length with its most significant bit set")]
    LengthOverflow,
    #[error("continuation frame outside a fragmented message")]
    UnexpectedContinuation,
    #[error("new data frame before the fragmented message ended")]
    UnfinishedMessage,
    #[error("text that is not valid UTF-8")]
    InvalidUtf8,
    #[error("close frame with a 1-byte payload")]
    TruncatedClose,
    #[error("close code {0} not allowed on the wire")]
    InvalidCloseCode(u16),
    #[error("message of {size} bytes exceeds the limit of {max}")]
    TooLarge { size: u64, max: usize },
}

impl FrameError {
    /// The close code that says why (RFC 6455 §7.4.1): 1009 for a message too
    /// large, 1007 for invalid UTF-8, 1002 for any other protocol error.
    pub fn close_code(&self) -> u16 {
        match self {
            FrameError::TooLarge { .. } => 1009,
            FrameError::InvalidUtf8 => 1007,
            _ => 1002,
        }
    }
}

/// Whether `code` may be sent in a close frame (RFC 6455 §7.4): 1004-1006 and
/// 1015 are reserved for reporting locally, below 1000 and 1016-2999 are unused.
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// A frame header, checked on its own.
#[derive(Debug, Clone, Copy)]
struct Header {
    fin: bool,
    opcode: OpCode,
    mask: [u8; 4],
    /// Header bytes, mask included.
    len: usize,
    payload: usize,
}

impl Header {
    fn frame_len(&self) -> usize {
        self.len + self.payload
    }
}

/// A header's parse: complete, or at least this many more bytes needed.
enum Parsed {
    Header(Header),
    Need(usize),
}

/// The header at the start of `bytes`, checked against the message in progress
/// (`open`: the type of a fragmented message being reassembled, and its size so
/// far) and the size limit `max`.
fn parse_header(
    bytes: &[u8],
    open: Option<(OpCode, usize)>,
    max: usize,
) -> Result<Parsed, FrameError> {
    let [b0, b1, ..] = *bytes else {
        return Ok(Parsed::Need(2 - bytes.len()));
    };
    if b0 & 0x70 != 0 {
        return Err(FrameError::ReservedBits);
    }
    let fin = b0 & 0x80 != 0;
    let opcode = OpCode::from_bits(b0 & 0x0f).ok_or(FrameError::ReservedOpcode(b0 & 0x0f))?;
    if b1 & 0x80 == 0 {
        return Err(FrameError::Unmasked);
    }
    let short = b1 & 0x7f;
    if opcode.is_control() {
        if !fin {
            return Err(FrameError::FragmentedControl);
        }
        if usize::from(short) > MAX_CONTROL_PAYLOAD {
            return Err(FrameError::ControlTooLong(u64::from(short)));
        }
    } else {
        match (opcode, open) {
            (OpCode::Continuation, None) => return Err(FrameError::UnexpectedContinuation),
            (OpCode::Text | OpCode::Binary, Some(_)) => return Err(FrameError::UnfinishedMessage),
            _ => {}
        }
    }
    let (extended, len_bytes) = match short {
        126 => (true, 2),
        127 => (true, 8),
        _ => (false, 0),
    };
    let header_len = 2 + len_bytes + 4;
    if bytes.len() < 2 + len_bytes {
        return Ok(Parsed::Need(header_len - bytes.len()));
    }
    let declared = if extended {
        let mut be = [0u8; 8];
        be[8 - len_bytes..].copy_from_slice(&bytes[2..2 + len_bytes]);
        u64::from_be_bytes(be)
    } else {
        u64::from(short)
    };
    if declared >> 63 != 0 {
        return Err(FrameError::LengthOverflow);
    }
    let so_far = open.map_or(0, |(_, size)| size as u64);
    let size = so_far.saturating_add(declared);
    if size > max as u64 {
        return Err(FrameError::TooLarge { size, max });
    }
    // Within `max`, which is a usize.
    let payload = declared as usize;
    if bytes.len() < header_len {
        return Ok(Parsed::Need(header_len - bytes.len()));
    }
    let mut mask = [0u8; 4];
    mask.copy_from_slice(&bytes[header_len - 4..header_len]);
    Ok(Parsed::Header(Header {
        fin,
        opcode,
        mask,
        len: header_len,
        payload,
    }))
}

/// XORs `data` with the 4-byte `mask`, starting at the mask's first byte.
pub fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    let word = u32::from_ne_bytes(mask);
    let mut chunks = data.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let mut bytes = [0u8; 4];
        bytes.copy_from_slice(chunk);
        let x = u32::from_ne_bytes(bytes) ^ word;
        chunk.copy_from_slice(&x.to_ne_bytes());
    }
    for (byte, m) in chunks.into_remainder().iter_mut().zip(mask) {
        *byte ^= m;
    }
}

/// A fragmented message being reassembled.
#[derive(Debug)]
struct Fragments {
    opcode: OpCode,
    payload: Vec<u8>,
    /// For text: how much of `payload` is known to be valid UTF-8 (what follows
    /// is at most the start of a character that the next fragment completes).
    checked: usize,
}

impl Fragments {
    /// Checks the text received since the last check (RFC 6455 §8.1: a text
    /// message is failed as soon as a frame makes it invalid, not at its end).
    fn check_text(&mut self) -> Result<(), FrameError> {
        if self.opcode != OpCode::Text {
            return Ok(());
        }
        match std::str::from_utf8(&self.payload[self.checked..]) {
            Ok(_) => self.checked = self.payload.len(),
            // Only the start of a character at the end: the next fragment decides.
            Err(e) if e.error_len().is_none() => self.checked += e.valid_up_to(),
            Err(_) => return Err(FrameError::InvalidUtf8),
        }
        Ok(())
    }
}

/// Turns the client's bytes into messages. See the module documentation.
#[derive(Debug)]
pub struct Decoder {
    max_message: usize,
    /// Bytes not decoded yet, from `start`: an incomplete frame, or what a caller
    /// that stopped early left. Holds no allocation when empty.
    pending: Vec<u8>,
    start: usize,
    fragments: Option<Box<Fragments>>,
}

impl Decoder {
    /// A decoder that refuses frames and messages longer than `max_message` bytes.
    pub fn new(max_message: usize) -> Decoder {
        Decoder {
            max_message,
            pending: Vec::new(),
            start: 0,
            fragments: None,
        }
    }

    /// The messages in the bytes kept from earlier calls followed by `input`.
    ///
    /// The iterator decodes straight from `input`; whatever it has not decoded
    /// when it is dropped (an incomplete frame, or everything after the last
    /// message taken if the caller stopped early) is copied and decoded first next
    /// time. After an error the decoder has discarded everything it held: the
    /// connection is to be failed.
    pub fn decode<'a>(&'a mut self, input: &'a [u8]) -> Decode<'a> {
        Decode {
            decoder: self,
            input,
            failed: false,
        }
    }

    /// How many bytes are kept for the next call.
    pub fn pending_len(&self) -> usize {
        self.pending.len() - self.start
    }

    /// Whether a fragmented message is being reassembled.
    pub fn in_message(&self) -> bool {
        self.fragments.is_some()
    }

    /// Heap bytes held: the pending bytes' capacity and the reassembly buffer's.
    pub fn allocated(&self) -> usize {
        self.pending.capacity()
            + self
                .fragments
                .as_ref()
                .map_or(0, |f| size_of::<Fragments>() + f.payload.capacity())
    }

    fn open(&self) -> Option<(OpCode, usize)> {
        self.fragments.as_ref().map(|f| (f.opcode, f.payload.len()))
    }

    /// Keeps `bytes` (which follow the pending ones) for the next call.
    fn keep(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.start > 0 {
            self.pending.drain(..self.start);
            self.start = 0;
        }
        self.pending.extend_from_slice(bytes);
    }

    /// Marks `n` pending bytes decoded, releasing the buffer once all are.
    fn consume_pending(&mut self, n: usize) {
        self.start += n;
        if self.start >= self.pending.len() {
            self.pending = Vec::new();
            self.start = 0;
        }
    }

    fn reset(&mut self) {
        self.pending = Vec::new();
        self.start = 0;
        self.fragments = None;
    }

    /// One whole frame: the message it completes, if it completes one.
    fn finish(&mut self, header: Header, payload: Vec<u8>) -> Result<Option<Message>, FrameError> {
        let data = match header.opcode {
            OpCode::Ping => return Ok(Some(Message::Ping(payload))),
            OpCode::Pong => return Ok(Some(Message::Pong(payload))),
            OpCode::Close => return close_payload(payload).map(|c| Some(Message::Close(c))),
            OpCode::Continuation => {
                let Some(fragments) = &mut self.fragments else {
                    return Err(FrameError::UnexpectedContinuation);
                };
                fragments.payload.extend_from_slice(&payload);
                if !header.fin {
                    fragments.check_text()?;
                    return Ok(None);
                }
                match self.fragments.take() {
                    Some(f) => (f.opcode, f.payload),
                    None => return Err(FrameError::UnexpectedContinuation),
                }
            }
            opcode if !header.fin => {
                let mut fragments = Box::new(Fragments {
                    opcode,
                    payload,
                    checked: 0,
                });
                fragments.check_text()?;
                self.fragments = Some(fragments);
                return Ok(None);
            }
            opcode => (opcode, payload),
        };
        match data {
            (OpCode::Text, bytes) => String::from_utf8(bytes)
                .map(|text| Some(Message::Text(text)))
                .map_err(|_| FrameError::InvalidUtf8),
            (_, bytes) => Ok(Some(Message::Binary(bytes))),
        }
    }
}

/// A close frame's payload: nothing, or a valid code and a UTF-8 reason.
fn close_payload(payload: Vec<u8>) -> Result<Option<(u16, String)>, FrameError> {
    match payload.as_slice() {
        [] => Ok(None),
        [_] => Err(FrameError::TruncatedClose),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_close_code(code) {
                return Err(FrameError::InvalidCloseCode(code));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| FrameError::InvalidUtf8)?;
            Ok(Some((code, reason.to_owned())))
        }
    }
}

/// The messages of one [`Decoder::decode`] call.
#[derive(Debug)]
pub struct Decode<'a> {
    decoder: &'a mut Decoder,
    input: &'a [u8],
    failed: bool,
}

impl Decode<'_> {
    fn step(&mut self) -> Result<Option<Message>, Step> {
        let d = &mut *self.decoder;
        let open = d.open();
        if d.pending_len() > 0 {
            let parsed = match parse_header(&d.pending[d.start..], open, d.max_message) {
                Ok(Parsed::Header(h)) if h.frame_len() > d.pending_len() => {
                    Ok(Parsed::Need(h.frame_len() - d.pending_len()))
                }
                parsed => parsed,
            };
            match parsed {
                Err(e) => Err(Step::Failed(e)),
                Ok(Parsed::Need(need)) => {
                    if self.input.is_empty() {
                        return Err(Step::Starved);
                    }
                    // Only what completes the frame (or its header): the rest is
                    // decoded straight from the input.
                    let n = need.min(self.input.len());
                    let (head, rest) = self.input.split_at(n);
                    d.keep(head);
                    self.input = rest;
                    Ok(None)
                }
                Ok(Parsed::Header(header)) => {
                    let frame = header.frame_len();
                    let payload = if d.start == 0 && d.pending.len() == frame {
                        // The whole buffer is this frame: it becomes the payload.
                        let mut bytes = std::mem::take(&mut d.pending);
                        bytes.drain(..header.len);
                        bytes
                    } else {
                        d.pending[d.start + header.len..d.start + frame].to_vec()
                    };
                    d.consume_pending(frame);
                    let mut payload = payload;
                    apply_mask(&mut payload, header.mask);
                    d.finish(header, payload).map_err(Step::Failed)
                }
            }
        } else {
            if self.input.is_empty() {
                return Err(Step::Starved);
            }
            match parse_header(self.input, open, d.max_message) {
                Err(e) => Err(Step::Failed(e)),
                Ok(Parsed::Need(_)) => Err(Step::Starved),
                Ok(Parsed::Header(header)) if self.input.len() < header.frame_len() => {
                    Err(Step::Starved)
                }
                Ok(Parsed::Header(header)) => {
                    let (frame, rest) = self.input.split_at(header.frame_len());
                    self.input = rest;
                    let mut payload = frame[header.len..].to_vec();
                    apply_mask(&mut payload, header.mask);
                    d.finish(header, payload).map_err(Step::Failed)
                }
            }
        }
    }
}

/// Why [`Decode::step`] produced no message.
enum Step {
    /// Every byte so far is decoded or kept: more input is needed.
    Starved,
    Failed(FrameError),
}

impl Iterator for Decode<'_> {
    type Item = Result<Message, FrameError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        loop {
            match self.step() {
                Ok(Some(message)) => return Some(Ok(message)),
                Ok(None) => {}
                Err(Step::Starved) => {
                    let rest = std::mem::take(&mut self.input);
                    self.decoder.keep(rest);
                    return None;
                }
                Err(Step::Failed(e)) => {
                    self.failed = true;
                    self.input = &[];
                    self.decoder.reset();
                    return Some(Err(e));
                }
            }
        }
    }
}

impl Drop for Decode<'_> {
    fn drop(&mut self) {
        if !self.failed {
            let rest = std::mem::take(&mut self.input);
            self.decoder.keep(rest);
        }
    }
}

/// How many bytes [`encode_frame`] writes for a payload of `len` bytes.
pub fn frame_len(len: usize) -> usize {
    let extended = match len {
        0..=125 => 0,
        126..=0xffff => 2,
        _ => 8,
    };
    2 + extended + len
}

fn encode_header(out: &mut Vec<u8>, fin: bool, opcode: OpCode, mask: Option<[u8; 4]>, len: usize) {
    let b0 = if fin { 0x80 } else { 0 } | opcode.bits();
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match len {
        0..=125 => out.extend_from_slice(&[b0, mask_bit | len as u8]),
        126..=0xffff => {
            out.extend_from_slice(&[b0, mask_bit | 126]);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.extend_from_slice(&[b0, mask_bit | 127]);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    if let Some(mask) = mask {
        out.extend_from_slice(&mask);
    }
}

/// Appends one unfragmented, unmasked frame (as a server sends) to `out`.
pub fn encode_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) {
    out.reserve(frame_len(payload.len()));
    encode_header(out, true, opcode, None, payload.len());
    out.extend_from_slice(payload);
}

/// Appends a close frame: empty, or `code` and `reason`, the reason cut at a
/// character boundary to fit in 123 bytes.
pub fn encode_close(out: &mut Vec<u8>, close: Option<(u16, &str)>) {
    let Some((code, reason)) = close else {
        encode_frame(out, OpCode::Close, &[]);
        return;
    };
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    payload[2..2 + end].copy_from_slice(&reason.as_bytes()[..end]);
    encode_frame(out, OpCode::Close, &payload[..2 + end]);
}

/// Appends a frame as a client sends it: masked with `mask`, and with FIN only if
/// `fin`. For tests and fuzzing.
pub fn encode_masked(out: &mut Vec<u8>, fin: bool, opcode: OpCode, mask: [u8; 4], payload: &[u8]) {
    encode_header(out, fin, opcode, Some(mask), payload.len());
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask);
}

#[cfg(test)]
mod tests;
