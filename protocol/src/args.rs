//! The arguments of an event or an ack.
//!
//! Arguments that arrive on the wire are kept as the JSON text they came in:
//! the decoder validates it completely (exactly what parsing it into
//! [`serde_json::Value`]s accepts, nothing more), and parses it only when the
//! application asks. A typed event reads its payload straight from that text,
//! and an echo or a relay sends the text back as it came, so neither builds a
//! tree of values it does not need. Arguments built by the application are
//! values, serialized when sent.

use std::fmt;
use std::sync::OnceLock;

use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde_json::Value;

use crate::event::{Event, EventError};

/// Arguments' text, with `text-args`.
#[cfg(feature = "text-args")]
type Text = Box<str>;

/// Without `text-args` arguments are never kept as text: a type with no value,
/// so the compiler drops every path that handles text.
#[cfg(not(feature = "text-args"))]
#[derive(Clone, PartialEq)]
enum Text {}

#[cfg(not(feature = "text-args"))]
impl std::ops::Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        match *self {}
    }
}

/// An event's or an ack's arguments: a JSON array, as text, as values, or both.
#[derive(Clone)]
pub struct Args {
    /// The array as it arrived (`[` ... `]`), valid JSON.
    json: Option<Text>,
    /// The array's elements, parsed from `json` on first use when it is set.
    values: OnceLock<Vec<Value>>,
}

impl Args {
    /// No arguments.
    pub fn new() -> Self {
        Args::from(Vec::new())
    }

    /// Arguments kept as `json`, the text of a JSON array already validated.
    #[cfg(feature = "text-args")]
    pub(crate) fn from_valid_json(json: Box<str>) -> Self {
        Args {
            json: Some(json),
            values: OnceLock::new(),
        }
    }

    /// The arguments as values, parsed on first use when they arrived as text.
    pub fn values(&self) -> &[Value] {
        self.values.get_or_init(|| match &self.json {
            Some(json) => serde_json::from_str(json)
                .expect("arguments are validated JSON arrays when they are decoded"),
            None => Vec::new(),
        })
    }

    /// The arguments as values, taken.
    pub fn into_values(mut self) -> Vec<Value> {
        self.values();
        self.values.take().unwrap_or_default()
    }

    /// The arguments' JSON text as they arrived, if they arrived as text.
    pub fn json(&self) -> Option<&str> {
        self.json.as_deref()
    }

    /// How many arguments there are.
    pub fn len(&self) -> usize {
        match (&self.json, self.values.get()) {
            (_, Some(values)) => values.len(),
            (Some(json), None) => serde_json::from_str::<Count>(json).map_or(0, |c| c.0),
            (None, None) => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        match (&self.json, self.values.get()) {
            (_, Some(values)) => values.is_empty(),
            (Some(json), None) => json.len() == 2,
            (None, None) => true,
        }
    }

    /// The first argument read as event `E`'s payload: straight from the text
    /// when the arguments arrived as text.
    pub fn decode<E: Event>(&self) -> Result<E::Payload, EventError> {
        let invalid = |source| EventError::InvalidPayload {
            event: E::NAME,
            source,
        };
        let first = match (&self.json, self.values.get()) {
            (Some(json), None) => {
                let mut de = serde_json::Deserializer::from_str(json);
                de.deserialize_seq(First::<E::Payload>(std::marker::PhantomData))
                    .map_err(invalid)?
            }
            _ => match self.values().first() {
                Some(value) => Some(E::Payload::deserialize(value).map_err(invalid)?),
                None => None,
            },
        };
        first.ok_or(EventError::MissingArgument { event: E::NAME })
    }

    /// Appends the arguments' elements, comma-separated, without the brackets.
    pub(crate) fn push_elements(&self, out: &mut Vec<u8>) {
        match (&self.json, self.values.get()) {
            (Some(json), _) => out.extend_from_slice(&json.as_bytes()[1..json.len() - 1]),
            (None, values) => {
                for (i, arg) in values.map_or(&[][..], Vec::as_slice).iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    serde_json::to_writer(&mut *out, arg).expect("a JSON value always serializes");
                }
            }
        }
    }
}

impl Default for Args {
    fn default() -> Self {
        Args::new()
    }
}

impl From<Vec<Value>> for Args {
    fn from(values: Vec<Value>) -> Self {
        Args {
            json: None,
            values: OnceLock::from(values),
        }
    }
}

impl From<Args> for Vec<Value> {
    fn from(args: Args) -> Self {
        args.into_values()
    }
}

impl PartialEq for Args {
    fn eq(&self, other: &Self) -> bool {
        match (&self.json, &other.json) {
            (Some(a), Some(b)) if a == b => true,
            _ => self.values() == other.values(),
        }
    }
}

impl fmt::Debug for Args {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.json {
            Some(json) => write!(f, "Args({})", &**json),
            None => f.debug_tuple("Args").field(&self.values()).finish(),
        }
    }
}

/// Reads a JSON array's first element as `T`, skipping the rest.
struct First<T>(std::marker::PhantomData<T>);

impl<'de, T: DeserializeOwned> Visitor<'de> for First<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of arguments")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<T>, A::Error> {
        let first = seq.next_element::<T>()?;
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(first)
    }
}

/// Counts a JSON array's elements.
struct Count(usize);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Counter;
        impl<'de> Visitor<'de> for Counter {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Count, A::Error> {
                let mut n = 0;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(Count(n))
            }
        }
        d.deserialize_seq(Counter)
    }
}

#[cfg(feature = "text-args")]
pub(crate) use text::{Shape, after_name, validate, whole};

/// The decoder's side: validating a packet's JSON and splitting off the
/// arguments' text.
#[cfg(feature = "text-args")]
mod text {
    use std::fmt;

    use serde::Deserialize;
    use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};

    use super::Args;

    /// The visits of JSON's scalars (and of strings, when `visit_str` is
    /// named), each accepted as `$value`: parsed by serde_json as a `Value`
    /// would be, and dropped.
    macro_rules! scalars {
        ($ty:ty, $value:expr $(, $str:ident)?) => {
            fn visit_bool<E>(self, _: bool) -> Result<$ty, E> {
                Ok($value)
            }
            fn visit_i64<E>(self, _: i64) -> Result<$ty, E> {
                Ok($value)
            }
            fn visit_u64<E>(self, _: u64) -> Result<$ty, E> {
                Ok($value)
            }
            fn visit_f64<E>(self, _: f64) -> Result<$ty, E> {
                Ok($value)
            }
            fn visit_unit<E>(self) -> Result<$ty, E> {
                Ok($value)
            }
            $(
                fn $str<E>(self, _: &str) -> Result<$ty, E> {
                    Ok($value)
                }
            )?
        };
    }

    /// What a packet's JSON is, found while validating it without building values.
    #[derive(Debug, PartialEq)]
    pub(crate) enum Shape {
        /// An array: its first element's string if the first element is a string
        /// (`Some(None)` if it is something else), `None` if the array is empty.
        Array {
            first: Option<Option<String>>,
        },
        Object,
        Other,
    }

    /// Validates JSON text exactly as parsing it into a [`Value`] would (numbers
    /// included: a number out of `f64`'s range is refused the same way), without
    /// allocating, and reports its [`Shape`].
    pub(crate) fn validate(json: &str) -> Result<Shape, serde_json::Error> {
        serde_json::from_str::<ShapeOf>(json).map(|s| s.0)
    }

    struct ShapeOf(Shape);

    impl<'de> Deserialize<'de> for ShapeOf {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(ShapeVisitor).map(ShapeOf)
        }
    }

    struct ShapeVisitor;

    impl<'de> Visitor<'de> for ShapeVisitor {
        type Value = Shape;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
            let first = seq.next_element_seed(FirstName)?;
            while seq.next_element::<Valid>()?.is_some() {}
            Ok(Shape::Array { first })
        }

        fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Shape, A::Error> {
            ValidVisitor.visit_map(map).map(|Valid| Shape::Object)
        }

        scalars!(Shape, Shape::Other, visit_str);
    }

    /// An array's first element: its string, or `None` for any other (valid) value.
    struct FirstName;

    impl<'de> DeserializeSeed<'de> for FirstName {
        type Value = Option<String>;

        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for FirstName {
        type Value = Option<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }

        fn visit_str<E>(self, s: &str) -> Result<Option<String>, E> {
            Ok(Some(s.to_owned()))
        }
        fn visit_string<E>(self, s: String) -> Result<Option<String>, E> {
            Ok(Some(s))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Option<String>, A::Error> {
            ValidVisitor.visit_seq(seq).map(|Valid| None)
        }
        fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Option<String>, A::Error> {
            ValidVisitor.visit_map(map).map(|Valid| None)
        }
        scalars!(Option<String>, None);
    }

    /// Any valid JSON value, parsed as [`Value`] would parse it and dropped.
    struct Valid;

    impl<'de> Deserialize<'de> for Valid {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(ValidVisitor)
        }
    }

    struct ValidVisitor;

    impl<'de> Visitor<'de> for ValidVisitor {
        type Value = Valid;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Valid, A::Error> {
            while seq.next_element::<Valid>()?.is_some() {}
            Ok(Valid)
        }
        fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Valid, A::Error> {
            while map.next_entry::<Valid, Valid>()?.is_some() {}
            Ok(Valid)
        }
        scalars!(Valid, Valid, visit_str);
    }

    /// The arguments that follow the event name in `json`, a valid JSON array
    /// whose first element is a string: `[` + the rest of the elements + `]`.
    pub(crate) fn after_name(json: &str) -> Args {
        let bytes = json.as_bytes();
        // Past the opening bracket and any whitespace, to the name's opening quote.
        let mut pos = json.find('"').expect("the array starts with a string") + 1;
        let mut escaped = false;
        while pos < bytes.len() {
            match (escaped, bytes[pos]) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => break,
                _ => {}
            }
            pos += 1;
        }
        // Past the closing quote: either `,` and the arguments, or `]`.
        let rest = json[pos + 1..].trim_start();
        let elements = match rest.strip_prefix(',') {
            Some(elements) => trim_array_end(elements),
            None => "",
        };
        Args::from_valid_json(bracketed(elements))
    }

    /// All of `json`'s elements, a valid JSON array.
    pub(crate) fn whole(json: &str) -> Args {
        let inner = json.trim().strip_prefix('[').expect("an array");
        Args::from_valid_json(bracketed(trim_array_end(inner)))
    }

    /// `elements` (the inside of a valid array, then its `]`) without the closing
    /// bracket and surrounding whitespace.
    fn trim_array_end(elements: &str) -> &str {
        let elements = elements.trim_end();
        elements
            .strip_suffix(']')
            .expect("a valid array ends with ]")
            .trim()
    }

    fn bracketed(elements: &str) -> Box<str> {
        let mut json = String::with_capacity(elements.len() + 2);
        json.push('[');
        json.push_str(elements);
        json.push(']');
        json.into_boxed_str()
    }
}

#[cfg(all(test, feature = "text-args"))]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn validation_accepts_exactly_what_values_accept() {
        for text in [
            r#"["a",1,-2,3.5,1e300,true,null,{"k":[{}]},"é\n"]"#,
            "[]",
            " [ \"x\" ] ",
            r#"{"a":1}"#,
            "12",
            "[1e400]",
            "[1,]",
            r#"{"a":}"#,
            "[\"\\ud800\"]",
            "[18446744073709551616]",
            "[-9223372036854775809]",
            "[01]",
            "[1] x",
            "",
        ] {
            assert_eq!(
                validate(text).is_ok(),
                serde_json::from_str::<Value>(text).is_ok(),
                "{text}"
            );
        }
    }

    #[test]
    fn shapes() {
        assert_eq!(
            validate(r#"["echo",{"a":1}]"#).unwrap(),
            Shape::Array {
                first: Some(Some("echo".into()))
            }
        );
        assert_eq!(
            validate(r#"[{"a":1},"echo"]"#).unwrap(),
            Shape::Array { first: Some(None) }
        );
        assert_eq!(validate("[]").unwrap(), Shape::Array { first: None });
        assert_eq!(validate(r#"{"a":[1]}"#).unwrap(), Shape::Object);
        assert_eq!(validate("\"s\"").unwrap(), Shape::Other);
    }

    #[test]
    fn arguments_after_the_name_keep_their_text() {
        for (text, args) in [
            (r#"["echo",{"seq":1},"x"]"#, r#"[{"seq":1},"x"]"#),
            (r#"["echo"]"#, "[]"),
            (r#" [ "e\"c,]" , [1, 2] ] "#, "[[1, 2]]"),
            (r#"["\\",null]"#, "[null]"),
        ] {
            assert_eq!(after_name(text).json(), Some(args), "{text}");
        }
        assert_eq!(whole(" [ 1 , 2 ] ").json(), Some("[1 , 2]"));
        assert_eq!(whole("[]").json(), Some("[]"));
    }

    #[test]
    fn text_and_values_agree() {
        let raw = after_name(r#"["e",{"b":[1,2.5,"s"]},null]"#);
        let values = Args::from(vec![json!({"b": [1, 2.5, "s"]}), Value::Null]);
        assert_eq!(raw, values);
        assert_eq!(raw.len(), 2);
        assert_eq!(values.len(), 2);
        assert!(!raw.is_empty());
        assert!(Args::from_valid_json("[]".into()).is_empty());
        assert_eq!(raw.values(), values.values());
        assert_eq!(raw.clone().into_values(), values.clone().into_values());
        let (mut a, mut b) = (Vec::new(), Vec::new());
        raw.push_elements(&mut a);
        values.push_elements(&mut b);
        assert_eq!(a, br#"{"b":[1,2.5,"s"]},null"#);
        assert_eq!(a, b);
    }

    #[test]
    fn typed_payloads_read_from_text_or_values() {
        #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        struct P {
            my: String,
        }
        struct E;
        impl Event for E {
            const NAME: &'static str = "e";
            type Payload = P;
        }
        let expected = P { my: "data".into() };
        let raw = after_name(r#"["e",{"my":"data"},2]"#);
        assert_eq!(raw.decode::<E>().unwrap(), expected);
        let values = Args::from(vec![json!({"my": "data"})]);
        assert_eq!(values.decode::<E>().unwrap(), expected);
        for empty in [after_name(r#"["e"]"#), Args::new()] {
            assert!(matches!(
                empty.decode::<E>(),
                Err(EventError::MissingArgument { event: "e" })
            ));
        }
        for wrong in [
            after_name(r#"["e",{"my":1}]"#),
            Args::from(vec![json!({"my": 1})]),
        ] {
            assert!(matches!(
                wrong.decode::<E>(),
                Err(EventError::InvalidPayload { event: "e", .. })
            ));
        }
    }
}
