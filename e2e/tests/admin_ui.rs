//! The official Socket.IO Admin UI (`@socket.io/admin-ui` 0.5.1's own bundle,
//! `interop/node_modules/@socket.io/admin-ui/ui/dist`, unmodified) against
//! duplex, in headless Chromium: served by duplex at `/admin-ui/`, logged in
//! through its connection modal, it lists duplex's sockets and rooms and
//! disconnects a socket; its Servers page and Dashboard show duplex's
//! statistics. docs/admin-ui-protocol.md §5 describes its DOM.
//!
//! Needs `npm ci` in `interop/` (which `cargo xtask test` runs) besides the
//! usual `DUPLEX_DIST`, `CHROMEDRIVER` and `CHROMIUM`. Leaves screenshots of
//! the UI's Sockets page in `target/admin-ui.png` (the README's picture,
//! `docs/admin-ui.png`, is a copy of it) and of its Dashboard in
//! `target/admin-ui-dashboard.png`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use duplex_e2e::webdriver::{Check, poll_until};
use duplex_e2e::{ChromeDriver, Session, TestServer, with_screenshot_on_failure};
use duplex_server::admin::{ADMIN_UI_PATH, AdminAuth, AdminConfig, AdminMode};
use serde_json::{Value, json};

/// Generous: a cold Chromium on a busy 2-core machine is slow.
const TIMEOUT: Duration = Duration::from_secs(30);

const USERNAME: &str = "admin";
const PASSWORD: &str = "duplex admin e2e";

/// The UI's bundle from the npm package; an error, never a skip, without it.
fn ui_dist() -> Result<PathBuf> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("e2e/ lives inside the workspace")?;
    let dist = workspace.join("interop/node_modules/@socket.io/admin-ui/ui/dist");
    if !dist.join("index.html").is_file() {
        bail!(
            "{} has no index.html: run `npm ci` in interop/ (`cargo xtask test` does)",
            dist.display()
        );
    }
    Ok(dist)
}

/// The rows of the data table on the page (`#/sockets/`, `#/rooms/`): each
/// row's cells' texts; a table with no row reads as no row.
fn table_rows(page: &Session) -> Result<Vec<Vec<String>>> {
    const SCRIPT: &str = r#"
        return Array.from(document.querySelectorAll('.v-data-table tbody tr'))
            .map(function (row) {
                return Array.from(row.querySelectorAll('td'))
                    .map(function (cell) { return cell.textContent.trim(); });
            })
            .filter(function (cells) { return cells.length > 1; });"#;
    let reply = page.execute(SCRIPT, Vec::new())?;
    serde_json::from_value(reply.clone()).with_context(|| format!("table script returned {reply}"))
}

/// Waits until the table has a row that `predicate` accepts; that row.
fn wait_for_row(
    page: &Session,
    what: &str,
    predicate: impl Fn(&[String]) -> bool,
) -> Result<Vec<String>> {
    poll_until(TIMEOUT, what, || {
        let rows = table_rows(page)?;
        match rows.iter().find(|row| predicate(row)) {
            Some(row) => Ok(Check::Done(row.clone())),
            None => Ok(Check::Waiting(format!("rows: {rows:?}"))),
        }
    })
}

/// Goes to one of the UI's pages (its router is in the fragment: no reload).
fn open_view(page: &Session, fragment: &str) -> Result<()> {
    page.execute(
        "window.location.hash = arguments[0]; return window.location.hash;",
        vec![json!(fragment)],
    )?;
    Ok(())
}

/// Replaces what an input holds by typing: select all, delete, type. (The
/// WebDriver "clear" empties the element without the `input` event that Vue's
/// `v-model` listens to, so the UI would put the old text back.)
fn type_over(input: &duplex_e2e::Element<'_>, text: &str) -> Result<()> {
    // Control+A, every modifier released (NULL), Backspace: WebDriver key codes.
    input.send_keys("\u{E009}a\u{E000}\u{E003}")?;
    input.send_keys(text)
}

/// Fills the connection modal and submits it.
fn log_in(page: &Session, server_url: &str, password: &str) -> Result<()> {
    let text_inputs = page.find_all(".v-dialog--active form input[type=text]")?;
    ensure!(
        text_inputs.len() >= 2,
        "the connection modal should have the Server URL and Username fields, has {} text inputs",
        text_inputs.len()
    );
    for (input, value) in text_inputs.iter().zip([server_url, USERNAME]) {
        type_over(input, value)?;
    }
    type_over(
        &page.find(".v-dialog--active form input[type=password]")?,
        password,
    )?;
    page.find(".v-dialog--active form button[type=submit]")?
        .click()?;
    Ok(())
}

#[test]
fn the_official_admin_ui_lists_and_disconnects_duplex_s_sockets() -> Result<()> {
    let config = duplex_server::Config {
        dist: duplex_e2e::server::dist_from_env()?,
        admin: Some(AdminConfig {
            auth: AdminAuth::Basic {
                username: USERNAME.to_owned(),
                // Cost 4: the check's speed is not what is tested here.
                password: bcrypt::hash(PASSWORD, 4)
                    .map_err(|e| anyhow::anyhow!("bcrypt: {e:?}"))?,
            },
            readonly: false,
            mode: AdminMode::Development,
            server_id: Some("duplex-e2e".to_owned()),
            ui_dist: Some(ui_dist()?),
        }),
        ..Default::default()
    };
    let server = TestServer::start_with(config)?;
    let base = format!("http://{}", server.addr());

    // The app's clients, before the UI (it selects `/` when it has sockets
    // there at its first `all_sockets`): one on WebSocket in channel `x`, one
    // on long-polling.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let connect = |transports| {
        rt.block_on(duplex_native::connect(
            &base,
            duplex_native::Options {
                transports,
                ..duplex_native::Options::default()
            },
        ))
    };
    let app = connect(duplex_native::Transports::WebSocketOnly).context("the app client")?;
    let polling =
        connect(duplex_native::Transports::PollingOnly).context("the polling app client")?;
    let joined = rt
        .block_on(app.emit_with_ack("join", vec![json!({"channel": "x"})]))
        .context("joining channel x")?;
    ensure!(
        joined
            .args
            .first()
            .is_some_and(|a| a["channels"] == json!(["x"])),
        "join ack: {:?}",
        joined.args
    );
    let (app_id, polling_id) = (app.sid(), polling.sid());

    let driver = ChromeDriver::start()?;
    // Wide enough for the navigation drawer and the desktop table layout.
    let page = driver.new_session_with_args(&["--window-size=1400,1000"])?;
    with_screenshot_on_failure(&page, "admin-ui", || {
        page.goto(&format!("{base}/{ADMIN_UI_PATH}/"))?;
        let width = page.execute("return window.innerWidth;", Vec::new())?;
        ensure!(
            width.as_u64().is_some_and(|w| w >= 1264),
            "the window is {width} px wide: the UI needs ≥ 1264 px for its desktop layout"
        );

        // A wrong password: the UI's own message.
        page.wait_for_text(
            ".v-dialog--active .v-card__title",
            |t| t.contains("Connection"),
            TIMEOUT,
        )
        .context("the connection modal never opened")?;
        log_in(&page, &base, "not the password")?;
        page.wait_for_text(
            ".v-dialog--active form .red--text",
            |text| text.trim() == "Invalid credentials",
            TIMEOUT,
        )
        .context("no \"Invalid credentials\" for a wrong password")?;

        // The right one: the modal closes, the app bar says connected.
        log_in(&page, &base, PASSWORD)?;
        poll_until(TIMEOUT, "the modal to close", || {
            let open = page.find_all(".v-dialog--active")?.len();
            Ok(if open == 0 {
                Check::Done(())
            } else {
                Check::Waiting(format!("{open} dialog(s) still open"))
            })
        })?;
        page.wait_for_text(
            "header",
            |text| text.to_lowercase().contains("connected"),
            TIMEOUT,
        )?;

        // The Sockets page lists the app's sockets, with their transports.
        open_view(&page, "#/sockets/")?;
        wait_for_row(&page, "the app's WebSocket socket", |row| {
            row[0] == app_id && row.get(2).is_some_and(|t| t == "WebSocket")
        })?;
        wait_for_row(&page, "the app's polling socket", |row| {
            row[0] == polling_id && row.get(2).is_some_and(|t| t.contains("polling"))
        })?;
        // For the picture: the modal's and the page's transitions over.
        poll_until(TIMEOUT, "the modal to be hidden", || {
            let shown = page.execute(
                "return Array.from(document.querySelectorAll('.v-dialog'))\
                 .filter(function (d) { return d.offsetParent !== null; }).length;",
                Vec::new(),
            )?;
            Ok(if shown == json!(0) {
                Check::Done(())
            } else {
                Check::Waiting(format!("{shown} dialog(s) shown"))
            })
        })?;
        std::thread::sleep(Duration::from_millis(800));
        let shot = duplex_e2e::target_dir().join("admin-ui.png");
        page.screenshot(&shot)?;
        println!(
            "screenshot of the Admin UI's Sockets page: {}",
            shot.display()
        );

        // The Rooms page: the channel's room, with its one socket.
        open_view(&page, "#/rooms/")?;
        let room = wait_for_row(&page, "room channel:x", |row| row[0] == "channel:x")?;
        ensure!(
            room.get(2).is_some_and(|count| count == "1"),
            "channel:x should have 1 socket: {room:?}"
        );

        // The Servers page: this server, from its `server_stats`.
        open_view(&page, "#/servers/")?;
        let row = wait_for_row(&page, "this server on the Servers page", |row| {
            row[0] == "duplex-e2e"
        })?;
        ensure!(
            row.iter()
                .any(|cell| cell == &std::process::id().to_string()),
            "the server's row should show its pid: {row:?}"
        );
        // The Dashboard's namespaces table, from the same statistics (and a
        // picture of the Dashboard, its charts drawn).
        open_view(&page, "#/")?;
        wait_for_row(
            &page,
            "namespace / with 2 sockets on the Dashboard",
            |row| row[0] == "/" && row.get(1).is_some_and(|count| count == "2"),
        )?;
        std::thread::sleep(Duration::from_millis(800));
        let dashboard = duplex_e2e::target_dir().join("admin-ui-dashboard.png");
        page.screenshot(&dashboard)?;
        println!(
            "screenshot of the Admin UI's Dashboard: {}",
            dashboard.display()
        );

        // Disconnect the WebSocket socket with its row's button.
        open_view(&page, "#/sockets/")?;
        wait_for_row(&page, "the app's socket again", |row| row[0] == app_id)?;
        let marked = page.execute(
            r#"var rows = document.querySelectorAll('.v-data-table tbody tr');
               for (var i = 0; i < rows.length; i++) {
                   var first = rows[i].querySelector('td');
                   if (first && first.textContent.trim() === arguments[0]) {
                       var button = rows[i].querySelector('td:last-child button');
                       if (button) { button.id = 'duplex-disconnect-me'; return true; }
                   }
               }
               return false;"#,
            vec![json!(app_id)],
        )?;
        ensure!(
            marked == Value::Bool(true),
            "no Disconnect button in the app socket's row"
        );
        page.find("#duplex-disconnect-me")?.click()?;

        poll_until(TIMEOUT, "the app client to be disconnected", || {
            let status = app.status().borrow().clone();
            Ok(if status.is_closed() {
                Check::Done(())
            } else {
                Check::Waiting(format!("{status:?}"))
            })
        })?;
        // The click also opened the socket's page: back to the list, without it.
        open_view(&page, "#/sockets/")?;
        wait_for_row(&page, "the polling socket still listed", |row| {
            row[0] == polling_id
        })?;
        poll_until(TIMEOUT, "the disconnected socket's row to go", || {
            let rows = table_rows(&page)?;
            Ok(if rows.iter().any(|row| row[0] == app_id) {
                Check::Waiting(format!("rows: {rows:?}"))
            } else {
                Check::Done(())
            })
        })?;
        ensure!(
            !polling.status().borrow().is_closed(),
            "only the chosen socket is disconnected"
        );
        Ok(())
    })?;
    page.delete()?;
    drop(polling);
    drop(app);
    server.stop()
}
