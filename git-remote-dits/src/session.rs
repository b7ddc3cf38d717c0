//! Opening a connection to a hub the way Git users expect: the URL from the remote's
//! config, the certificate pinned by `dits.<hub>.fingerprint` (or learnt on first use
//! when allowed), the token from `git credential fill`, approved or rejected afterwards.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::client::{Hub, HubError, LinkSettings, TrustSettings};
use anyhow::{Context, Result};
use dits_wire::tls::TrustedBy;
use dits_wire::wire::{ErrorCode, KeysResult};
use dits_wire::RemoteUrl;

use crate::git;

pub struct Credential {
    pub username: Option<String>,
    pub token: String,
}

fn credential_input(url: &RemoteUrl, cred: Option<&Credential>) -> String {
    let mut s = format!("protocol=dits\nhost={}\n", url.authority());
    if let Some(c) = cred {
        if let Some(u) = &c.username {
            s.push_str(&format!("username={u}\n"));
        }
        s.push_str(&format!("password={}\n", c.token));
    }
    s.push('\n');
    s
}

fn credential(action: &str, input: &str) -> Option<String> {
    let mut child = Command::new("git")
        .args(["credential", action])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(input.as_bytes()).ok()?;
    let out = child.wait_with_output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The token Git's credential helpers have for this hub, if any.
pub fn fill(url: &RemoteUrl) -> Option<Credential> {
    let out = credential("fill", &credential_input(url, None))?;
    let mut username = None;
    let mut token = None;
    for line in out.lines() {
        if let Some(v) = line.strip_prefix("username=") {
            username = Some(v.to_string());
        } else if let Some(v) = line.strip_prefix("password=") {
            token = Some(v.to_string());
        }
    }
    Some(Credential {
        username,
        token: token.filter(|t| !t.is_empty())?,
    })
}

pub fn approve(url: &RemoteUrl, cred: &Credential) {
    credential("approve", &credential_input(url, Some(cred)));
}

pub fn reject(url: &RemoteUrl, cred: &Credential) {
    credential("reject", &credential_input(url, Some(cred)));
}

/// A connected hub plus what is needed to report on its credentials afterwards.
pub struct Session {
    pub hub: Hub,
    pub url: RemoteUrl,
    pub credential: Option<Credential>,
    /// What the hub said of the repository's keys when the session began (`keys`).
    pub keys: KeysResult,
    /// `hub` and the further connections transfers spread over, made on first need.
    connections: tokio::sync::OnceCell<Vec<Hub>>,
}

pub async fn connect(url: &RemoteUrl) -> Result<Session> {
    let key = format!("dits.{}.fingerprint", url.base());
    let fingerprint = git::try_run(&["config", "--get", &key]).map(|s| s.trim().to_string());
    let trust_on_first_use = std::env::var("GIT_DITS_TRUST_ON_FIRST_USE").is_ok_and(|v| v == "1")
        || git::config_bool("dits.trustOnFirstUse", false);
    let ca_file = git::try_run(&["config", "--type=path", "--get", "dits.caInfo"])
        .or_else(|| git::try_run(&["config", "--type=path", "--get", "http.sslCAInfo"]))
        .map(|s| std::path::PathBuf::from(s.trim()));
    let trust = TrustSettings {
        fingerprint: fingerprint.clone(),
        trust_on_first_use,
        ca_file,
    };
    let credential = fill(url);
    let token = credential
        .as_ref()
        .map(|c| c.token.clone())
        .unwrap_or_default();
    let hub = Hub::connect_with(url, &trust, &token, link_settings())
        .await
        .map_err(anyhow::Error::new)?;
    // Only a certificate nothing else vouched for is pinned, like an SSH known_hosts
    // entry. A CA-signed one is checked against its CA on every connection instead:
    // pinning it would break this client the day the hub's certificate is reissued.
    if fingerprint.is_none() && hub.trusted_by == Some(TrustedBy::FirstUse) {
        if let Some(seen) = &hub.fingerprint {
            let _ = git::try_run(&["config", &key, seen]);
            eprintln!(
                "dits: trusting {} on first use: certificate {seen} (saved as {key})",
                url.base()
            );
        }
    }
    let mut session = Session {
        hub,
        url: url.clone(),
        credential,
        keys: KeysResult::default(),
        connections: tokio::sync::OnceCell::new(),
    };
    session.load_keys().await?;
    Ok(session)
}

/// `dits.idleTimeout` (seconds of silence before a connection counts as dead, at most
/// 60), `dits.reconnectTimeout` (seconds to keep trying to connect again after that) and
/// `dits.congestion` (`bbr`, `cubic` or `newreno`; `DITS_QUIC_CONGESTION` wins).
fn link_settings() -> LinkSettings {
    let defaults = LinkSettings::default();
    let secs = |key: &str, default: std::time::Duration| {
        std::time::Duration::from_secs(git::config_usize(key, default.as_secs() as usize) as u64)
    };
    LinkSettings {
        idle_timeout: secs("dits.idleTimeout", defaults.idle_timeout),
        reconnect_for: secs("dits.reconnectTimeout", defaults.reconnect_for),
        congestion: dits_wire::tls::Congestion::from_env_or(
            git::try_run(&["config", "--get", "dits.congestion"]).as_deref(),
        ),
    }
}

impl Session {
    /// Asks the hub whether the repository is encrypted and for this user's wrapped keys,
    /// remembers the answer for commands that run without the hub (the filter), and
    /// seals and opens objects with the keys from now on.
    async fn load_keys(&mut self) -> Result<()> {
        let keys = self.hub.keys().await.map_err(|e| self.explain(e))?;
        if let Err(e) = crate::keys::remember(&keys) {
            tracing::debug!("not remembering the repository's keys: {e:#}");
        }
        self.hub.set_keyring(crate::keys::keyring_from(&keys)?);
        self.keys = keys;
        Ok(())
    }

    /// Closes every connection of the session and waits until the hub has heard.
    pub async fn close(&self) {
        for hub in self.connections.get().into_iter().flatten() {
            hub.close_connection();
        }
        self.hub.close().await;
    }

    /// The connections a transfer spreads its batches over: `hub` and `dits.connections`
    /// − 1 more (default 1 in all), made together on first need. One that cannot be made
    /// is left out (the transfer still has `hub`).
    pub async fn connections(&self) -> &[Hub] {
        self.connections
            .get_or_init(|| async {
                let wanted = git::config_usize("dits.connections", 1).clamp(1, 16);
                let mut more = tokio::task::JoinSet::new();
                for _ in 1..wanted {
                    let hub = self.hub.clone();
                    more.spawn(async move { hub.another().await });
                }
                let mut hubs = vec![self.hub.clone()];
                while let Some(made) = more.join_next().await {
                    match made {
                        Ok(Ok(hub)) => hubs.push(hub),
                        Ok(Err(e)) => tracing::debug!("{e}"),
                        Err(e) => tracing::debug!("connecting: {e}"),
                    }
                }
                hubs
            })
            .await
    }

    /// Turns a hub refusal into a message that says what to do, and tells the
    /// credential helpers whether the token worked.
    pub fn explain(&self, e: HubError) -> anyhow::Error {
        if e.code() == Some(ErrorCode::Unauthenticated) {
            if let Some(c) = &self.credential {
                reject(&self.url, c);
            }
            return anyhow::anyhow!(
                "{}: {e}\nhint: store a token from `dits-hub user add` with your credential helper, e.g.\n  printf 'protocol=dits\\nhost={}\\nusername=USER\\npassword=TOKEN\\n\\n' | git credential approve",
                self.url,
                self.url.authority()
            );
        }
        anyhow::anyhow!("{}: {e}", self.url)
    }

    pub fn authenticated(&self) {
        if let Some(c) = &self.credential {
            approve(&self.url, c);
        }
    }
}

/// The hub a filter or command should fetch media from and lock on
/// ([`hub_url`]); an error that says how to name one when nothing does.
pub fn default_remote_url() -> Result<RemoteUrl> {
    hub_url()?.ok_or_else(|| {
        anyhow::anyhow!(
            "no Dits hub for media: the remote is not a dits:// URL and neither `git config dits.hub` nor a committed .ditsconfig names one (e.g. git config dits.hub dits://hub.example:7443/OWNER/NAME)"
        )
    })
}

/// The hub holding this repository's media, when anything names one, in this order:
/// `git config dits.hub` (the user's or the repository's word); the current branch's
/// remote (else `origin`) when it is a `dits://` URL; `dits.hub` in the committed
/// `.ditsconfig` (the working tree's, else HEAD's: during a clone's checkout the file
/// may not be written yet). Only that one key is read from `.ditsconfig`, so a
/// repository cannot set anything else in its users' configuration.
pub fn hub_url() -> Result<Option<RemoteUrl>> {
    let parse = |url: &str, from: &str| {
        RemoteUrl::parse(url.trim())
            .with_context(|| format!("dits.hub in {from} must be dits://HOST[:PORT]/OWNER/NAME"))
    };
    if let Some(url) = git::try_run(&["config", "--get", "dits.hub"]) {
        return Ok(Some(parse(&url, "git config")?));
    }
    let branch = git::try_run(&["symbolic-ref", "--short", "-q", "HEAD"]).unwrap_or_default();
    let remote = git::try_run(&[
        "config",
        "--get",
        &format!("branch.{}.remote", branch.trim()),
    ])
    .map(|s| s.trim().to_string())
    .unwrap_or_else(|| "origin".to_string());
    if let Some(url) = git::try_run(&["config", "--get", &format!("remote.{remote}.url")]) {
        if url.trim().starts_with("dits://") {
            return Ok(Some(parse(&url, &format!("remote.{remote}.url"))?));
        }
    }
    let in_tree = git::try_run(&["rev-parse", "--show-toplevel"])
        .map(|top| Path::new(top.trim()).join(DITSCONFIG))
        .filter(|path| path.is_file());
    let committed = match &in_tree {
        Some(path) => git::try_run(&["config", "-f", &path.to_string_lossy(), "--get", "dits.hub"]),
        None => git::try_run(&[
            "config",
            "--blob",
            &format!("HEAD:{DITSCONFIG}"),
            "--get",
            "dits.hub",
        ]),
    };
    committed.map(|url| parse(&url, DITSCONFIG)).transpose()
}

/// The committed file naming the hub for a repository whose Git remote is elsewhere
/// (Git's config syntax, like Git LFS's `.lfsconfig`).
pub const DITSCONFIG: &str = ".ditsconfig";
