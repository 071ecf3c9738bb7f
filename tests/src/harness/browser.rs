//! A real browser for page tests: Debian's headless Chromium driven by its `chromedriver`
//! over the W3C WebDriver protocol (JSON over HTTP on loopback), with no crate in between.
//! Chromium runs with `--no-sandbox` (tests run as root in CI) and a profile of its own in a
//! temporary folder. Dropping the [`Browser`] kills the driver and every browser process it
//! started (its process group): asking chromedriver to end the session can hang for minutes
//! once Chromium has exited under it.

use std::{
    net::{SocketAddr, TcpListener},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context, bail};
use base64::Engine as _;
use nix::{sys::signal, unistd::Pid};
use serde_json::{Value, json};

use super::{http, wait_until};

/// Where Debian puts the browser and its driver.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A headless Chromium session.
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session; fails naming the packages when
    /// Chromium or its driver is not installed.
    pub fn start() -> anyhow::Result<Self> {
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            if !Path::new(path).exists() {
                bail!(
                    "{path} is missing: this test drives a real browser; install Debian's \
                     `chromium` and `chromium-driver` (`.ci/run` does), e.g. \
                     `apt-get install -y chromium chromium-driver` ({package} is missing)"
                );
            }
        }
        let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={}", addr.port()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .context("starting chromedriver")?;
        let profile = tempfile::tempdir()?;
        let mut browser = Self {
            driver,
            addr,
            session: String::new(),
            _profile: profile,
        };
        wait_until("chromedriver to be ready", Duration::from_secs(20), || {
            let status = http::get(addr, "/status").ok()?.json().ok()?;
            status["value"]["ready"].as_bool().filter(|r| *r)
        })?;
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--window-size=1280,1700".to_owned(),
            format!("--user-data-dir={}", browser._profile.path().display()),
        ];
        let created = browser.call(
            "POST",
            "/session",
            &json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
            }}}),
        )?;
        browser.session = created["sessionId"]
            .as_str()
            .context("no session id in chromedriver's answer")?
            .to_owned();
        Ok(browser)
    }

    /// One WebDriver command: its `value`, or the driver's error.
    fn call(&self, method: &str, path: &str, body: &Value) -> anyhow::Result<Value> {
        let body = if method == "GET" || method == "DELETE" {
            Vec::new()
        } else {
            serde_json::to_vec(body)?
        };
        let headers = [("content-type", "application/json")];
        let answer = http::request(self.addr, method, path, &headers, &body)?;
        let value = answer.json()?;
        if answer.status != 200 {
            bail!(
                "WebDriver {method} {path}: {} {}",
                answer.status,
                value["value"]
            );
        }
        Ok(value["value"].clone())
    }

    fn session_call(&self, method: &str, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    /// Loads `url` and waits until it has loaded.
    pub fn open(&self, url: &str) -> anyhow::Result<()> {
        self.session_call("POST", "/url", &json!({ "url": url }))
            .map(drop)
    }

    /// Runs `script` (a function body: `return …`) in the page with `args`; what it returned.
    pub fn run(&self, script: &str, args: &[Value]) -> anyhow::Result<Value> {
        self.session_call(
            "POST",
            "/execute/sync",
            &json!({ "script": script, "args": args }),
        )
    }

    /// Polls `script` until it returns something other than `null` or `false`.
    pub fn wait_for(&self, what: &str, timeout: Duration, script: &str) -> anyhow::Result<Value> {
        wait_until(what, timeout, || {
            self.run(script, &[])
                .ok()
                .filter(|v| !v.is_null() && *v != Value::Bool(false))
        })
    }

    /// The page's address now.
    pub fn url(&self) -> anyhow::Result<String> {
        Ok(self
            .session_call("GET", "/url", &Value::Null)?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// Saves a PNG of the window to `path` and returns its size in bytes.
    pub fn screenshot(&self, path: &Path) -> anyhow::Result<u64> {
        let encoded = self.session_call("GET", "/screenshot", &Value::Null)?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().context("a base64 screenshot")?)?;
        std::fs::write(path, &png).with_context(|| format!("writing {}", path.display()))?;
        Ok(png.len() as u64)
    }

    /// Where screenshots go: `CUTOVER_SCREENSHOT_DIR`, else the system's temporary folder.
    pub fn screenshot_dir() -> PathBuf {
        std::env::var_os("CUTOVER_SCREENSHOT_DIR").map_or_else(std::env::temp_dir, PathBuf::from)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The driver leads its process group, which Chromium and its helpers joined.
        let group = Pid::from_raw(self.driver.id() as i32);
        let _ = signal::killpg(group, signal::Signal::SIGKILL);
        let _ = self.driver.wait();
    }
}
