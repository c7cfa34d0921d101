//! A real headless browser for the status page: Debian's `chromium`
//! loads a URL, runs its script and prints the DOM it ends with.
//!
//! Without chromium a test that needs it says so and passes, unless
//! `QUORUMKMS_REQUIRE_CHROMIUM=1` (as `.ci/run` sets), which makes a
//! missing browser a failure.

use std::process::Stdio;
use std::time::Duration;

/// The browser binary, if one is installed.
fn binary() -> Option<&'static str> {
    ["chromium", "chromium-browser"].into_iter().find(|name| {
        std::process::Command::new(name)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Whether a browser is there; if not, says why the caller skips (or
/// panics when one is required).
pub fn available(test: &str) -> bool {
    if binary().is_some() {
        return true;
    }
    if std::env::var("QUORUMKMS_REQUIRE_CHROMIUM").as_deref() == Ok("1") {
        panic!("{test}: chromium is not installed and QUORUMKMS_REQUIRE_CHROMIUM=1");
    }
    eprintln!(
        "{test}: chromium is not installed (apt-get install chromium); \
         skipping the browser checks"
    );
    false
}

/// The DOM of `url` after its scripts ran for a second of virtual time.
pub async fn dump_dom(url: &str) -> String {
    let binary = binary().expect("chromium (check `available` first)");
    let profile = tempfile::tempdir().expect("browser profile dir");
    let run = tokio::process::Command::new(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--virtual-time-budget=1000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(url)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("chromium answers within a minute")
        .expect("run chromium");
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && dom.contains("</html>"),
        "chromium failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}
