//! The client side of the wire protocol: one QUIC connection to a hub, a request per
//! stream. Callers run several requests at once on clones of one `Hub` for parallel
//! transfers.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use dits_core::crypt::RepoSecret;
use dits_core::keyring::Keyring;
use dits_core::ChunkId;
use tokio::io::AsyncReadExt;

use dits_wire::refs::{valid_oid, valid_ref_name};
use dits_wire::tls::{quic_client_config, Congestion, PinnedVerifier, TrustedBy};
use dits_wire::url::RemoteUrl;
use dits_wire::wire::{
    ids_from_hex, ids_to_hex, read_frame, read_object, write_frame, write_object, DirectObject,
    Done, ErrorCode, GetDerivedResult, GetGitPackResult, GetUrlsResult, GitPacksResult,
    KeyChangeRequest, KeysResult, Lock, LockListResult, LockResult, LockVerifyResult,
    MissingResult, Op, OpResult, PutGitPackResult, PutResult, PutStatusResult, PutUrlResult,
    RefResult, RefUpdate, RefsResult, Request, Response, UnlockResult, UpdateRefsResult,
    WireObject,
};

/// How far to trust a hub's certificate.
#[derive(Debug, Clone, Default)]
pub struct TrustSettings {
    /// The pinned fingerprint (`dits.<hub>.fingerprint`).
    pub fingerprint: Option<String>,
    /// Accept an unpinned hub and report its fingerprint for pinning.
    pub trust_on_first_use: bool,
    /// Extra CA certificates (PEM) beside the system's, for CA-signed hubs.
    pub ca_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum HubError {
    /// The hub refused the request; `code` says why.
    #[error("{message}")]
    Refused { code: ErrorCode, message: String },
    #[error("{0}")]
    Untrusted(String),
    #[error("{0}")]
    Transport(String),
    /// The repository is encrypted and this user lacks the key the request needs.
    #[error("{0}")]
    NoKey(String),
}

impl HubError {
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            HubError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }
}

fn transport(e: impl std::fmt::Display) -> HubError {
    HubError::Transport(e.to_string())
}

/// How a client holds on to a hub across a bad link: how long silence means the
/// connection is dead (`dits.idleTimeout`), and how long to keep trying to connect again
/// after that before giving up (`dits.reconnectTimeout`).
#[derive(Debug, Clone, Copy)]
pub struct LinkSettings {
    pub idle_timeout: Duration,
    pub reconnect_for: Duration,
    /// The congestion controller for what this client sends (`dits.congestion`).
    pub congestion: Congestion,
}

impl Default for LinkSettings {
    fn default() -> Self {
        LinkSettings {
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            reconnect_for: Duration::from_secs(600),
            congestion: Congestion::from_env(),
        }
    }
}

/// Silence after which a client takes its connection for dead. Well below the hub's 60 s:
/// during an outage QUIC's retransmission timer backs off (0.3 s, 0.6 s, ... 9.6 s at
/// 100 ms), so a connection that outlives a 10 s outage may then sit idle for up to 9 s
/// more before its next probe finds the link back; a new connection is quicker. Keep-
/// alives every quarter of it keep a healthy quiet connection from being taken for dead.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most time the first connection attempt may take (handshake included).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Most time one attempt to reconnect may take: short, so that attempts keep coming and
/// one of them soon follows the link's return.
const RECONNECT_ATTEMPT: Duration = Duration::from_secs(5);
/// Longest pause between two attempts to reconnect.
const RECONNECT_PAUSE_MAX: Duration = Duration::from_secs(2);

/// The QUIC connection under a [`Hub`] and what it takes to make another one: clones of a
/// `Hub` share it, so a reconnection made by one request serves them all.
struct Link {
    endpoint: quinn::Endpoint,
    addr: SocketAddr,
    settings: LinkSettings,
    /// The live connection, and how many connections came before it.
    current: std::sync::Mutex<(u64, quinn::Connection)>,
    /// One reconnection at a time; requests that find the connection dead meanwhile wait
    /// for it and use what it made.
    reconnecting: tokio::sync::Mutex<()>,
}

impl Link {
    fn new(
        endpoint: quinn::Endpoint,
        addr: SocketAddr,
        settings: LinkSettings,
        connection: quinn::Connection,
    ) -> Arc<Link> {
        Arc::new(Link {
            endpoint,
            addr,
            settings,
            current: std::sync::Mutex::new((0, connection)),
            reconnecting: tokio::sync::Mutex::new(()),
        })
    }

    fn current(&self) -> (u64, quinn::Connection) {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[derive(Clone)]
pub struct Hub {
    url: RemoteUrl,
    token: String,
    link: Arc<Link>,
    /// The certificate fingerprint the hub presented.
    pub fingerprint: Option<String>,
    /// What vouched for that certificate: only one trusted on first use is pinned.
    pub trusted_by: Option<TrustedBy>,
    /// An encrypted repository's keys: objects go to the hub sealed, under locators, and
    /// come back opened. `None`: the repository is not encrypted.
    keyring: Option<Arc<Keyring>>,
}

impl Hub {
    pub async fn connect(
        url: &RemoteUrl,
        trust: &TrustSettings,
        token: &str,
    ) -> Result<Hub, HubError> {
        Hub::connect_with(url, trust, token, LinkSettings::default()).await
    }

    pub async fn connect_with(
        url: &RemoteUrl,
        trust: &TrustSettings,
        token: &str,
        settings: LinkSettings,
    ) -> Result<Hub, HubError> {
        let addr = resolve(url)?;
        let ca = if trust.fingerprint.is_some() {
            None
        } else {
            dits_wire::tls::ca_verifier(trust.ca_file.as_deref())
                .map_err(|e| transport(format!("{url}: {e:#}")))?
        };
        let verifier = PinnedVerifier::new(trust.fingerprint.clone(), trust.trust_on_first_use, ca);
        let bind: SocketAddr = if addr.is_ipv6() {
            "[::]:0".parse().unwrap()
        } else {
            "0.0.0.0:0".parse().unwrap()
        };
        let mut endpoint = dits_wire::tls::endpoint(bind, None).map_err(transport)?;
        endpoint.set_default_client_config(
            quic_client_config(verifier.clone(), settings.idle_timeout, settings.congestion)
                .map_err(transport)?,
        );
        let connection = match dial(&endpoint, addr, url, CONNECT_TIMEOUT).await {
            Ok(c) => c,
            Err(Dial::Refused(e)) => {
                return Err(match verifier.seen() {
                    Some(seen) if trust.fingerprint.is_none() || e.contains("pinned") => {
                        HubError::Untrusted(untrusted_message(url, &seen, trust.fingerprint.as_deref()))
                    }
                    _ => transport(format!("{url}: cannot connect: {e}")),
                })
            }
            Err(Dial::NoAnswer(_)) => {
                return Err(transport(format!(
                    "{url}: no answer from the hub within {} s (is `dits-hub serve` running and UDP port {} reachable?)",
                    CONNECT_TIMEOUT.as_secs(),
                    url.port
                )))
            }
        };
        let (fingerprint, trusted_by) = (verifier.seen(), verifier.trusted_by());
        // A certificate accepted on first use is the only one a reconnection accepts: the
        // verifier that took it would take any other.
        if let (Some(TrustedBy::FirstUse), Some(seen)) = (trusted_by, &fingerprint) {
            let pinned = PinnedVerifier::new(Some(seen.clone()), false, None);
            endpoint.set_default_client_config(
                quic_client_config(pinned, settings.idle_timeout, settings.congestion)
                    .map_err(transport)?,
            );
        }
        Ok(Hub {
            url: url.clone(),
            token: token.to_string(),
            link: Link::new(endpoint, addr, settings, connection),
            fingerprint,
            trusted_by,
            keyring: None,
        })
    }

    /// What to do after a request on connection `generation` ended with `result`: its
    /// value, or `None` to send the request again because the connection died and a new
    /// one is up (see [`Hub::recover`]), or the error. For requests that may be repeated
    /// as they are.
    pub async fn again<T>(
        &self,
        generation: u64,
        result: Result<T, HubError>,
    ) -> Result<Option<T>, HubError> {
        match result {
            Ok(value) => Ok(Some(value)),
            Err(e @ HubError::Transport(_)) => {
                self.recover(generation, e).await?;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Another connection to the same hub, over the same UDP socket and trusting the same
    /// certificate, with its own congestion controller and its own reconnection: for
    /// spreading a transfer's batches so that one held back by loss or a stall does not
    /// hold back the rest.
    pub async fn another(&self) -> Result<Hub, HubError> {
        let link = &self.link;
        let connection = dial(&link.endpoint, link.addr, &self.url, CONNECT_TIMEOUT)
            .await
            .map_err(|e| transport(format!("{}: another connection: {e}", self.url)))?;
        Ok(Hub {
            url: self.url.clone(),
            token: self.token.clone(),
            link: Link::new(link.endpoint.clone(), link.addr, link.settings, connection),
            fingerprint: self.fingerprint.clone(),
            trusted_by: self.trusted_by,
            keyring: self.keyring.clone(),
        })
    }

    /// Whether connection `generation` is gone: dead, or already replaced.
    pub fn lost(&self, generation: u64) -> bool {
        let (now, connection) = self.link.current();
        now != generation || connection.close_reason().is_some()
    }

    /// Which connection requests go over now; pass it to [`Hub::recover`] after one fails.
    pub fn generation(&self) -> u64 {
        self.link.current().0
    }

    /// After `error` on connection `generation`: if that connection is dead (timed out,
    /// reset, closed by the hub), waits until there is a new one, made here or by another
    /// request, and returns so the caller can try again; otherwise returns `error`.
    /// Reconnecting is tried for `dits.reconnectTimeout`, with pauses growing to 2 s.
    pub async fn recover(&self, generation: u64, error: HubError) -> Result<(), HubError> {
        let _one = self.link.reconnecting.lock().await;
        let (now, connection) = self.link.current();
        if now != generation {
            return Ok(());
        }
        let reason = match connection.close_reason() {
            None | Some(quinn::ConnectionError::LocallyClosed) => return Err(error),
            Some(reason) => reason,
        };
        let settings = self.link.settings;
        crate::progress::end_line();
        eprintln!(
            "dits: {}: connection lost ({reason}); reconnecting",
            self.url
        );
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(250);
        loop {
            match dial(&self.link.endpoint, self.link.addr, &self.url, RECONNECT_ATTEMPT).await {
                Ok(fresh) => {
                    crate::progress::end_line();
                    *self.link.current.lock().unwrap_or_else(|e| e.into_inner()) =
                        (generation + 1, fresh);
                    eprintln!(
                        "dits: {}: reconnected after {:.1} s",
                        self.url,
                        started.elapsed().as_secs_f64()
                    );
                    return Ok(());
                }
                // A certificate that no longer passes is not the link's fault.
                Err(Dial::Refused(e)) if e.contains("certificate") => {
                    return Err(transport(format!("{}: reconnecting: {e}", self.url)))
                }
                Err(e) if started.elapsed() + pause < settings.reconnect_for => {
                    tracing::debug!("reconnecting to {}: {e}", self.url);
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RECONNECT_PAUSE_MAX);
                }
                Err(e) => {
                    return Err(transport(format!(
                        "{}: connection lost ({reason}) and not made again within {} s ({e}); run the command again to resume, or raise dits.reconnectTimeout",
                        self.url,
                        settings.reconnect_for.as_secs()
                    )))
                }
            }
        }
    }

    pub fn url(&self) -> &RemoteUrl {
        &self.url
    }

    async fn open(&self, op: Op) -> Result<(quinn::SendStream, quinn::RecvStream), HubError> {
        let (_, connection) = self.link.current();
        let (mut send, recv) = connection
            .open_bi()
            .await
            .map_err(|e| transport(format!("{}: {e}", self.url)))?;
        let request = Request {
            token: self.token.clone(),
            repo: self.url.repo.clone(),
            op,
        };
        write_frame(&mut send, &request).await.map_err(transport)?;
        Ok((send, recv))
    }

    /// The hub's answer header, as the op's typed result (`T`); a refusal is
    /// [`HubError::Refused`], an answer missing a field is a transport error.
    async fn answer<T: OpResult>(&self, recv: &mut quinn::RecvStream) -> Result<T, HubError> {
        let response: Response = read_frame(recv)
            .await
            .map_err(|e| transport(format!("{}: {e}", self.url)))?;
        if response.ok {
            response
                .result_as()
                .map_err(|e| transport(format!("{}: {e}", self.url)))
        } else {
            Err(HubError::Refused {
                code: response.code.unwrap_or(ErrorCode::Internal),
                message: response.message.unwrap_or_else(|| "refused".into()),
            })
        }
    }

    /// A request with no body and nothing after the answer's header, which may be asked
    /// again as it is: asked again over a new connection if the connection dies.
    async fn ask<T: OpResult>(&self, op: Op) -> Result<T, HubError> {
        loop {
            let generation = self.generation();
            let answer = self.call::<T>(op.clone()).await.map(|(result, _)| result);
            if let Some(result) = self.again(generation, answer).await? {
                return Ok(result);
            }
        }
    }

    /// A request with no body.
    async fn call<T: OpResult>(&self, op: Op) -> Result<(T, quinn::RecvStream), HubError> {
        let (mut send, mut recv) = self.open(op).await?;
        send.finish().map_err(transport)?;
        let result = self.answer(&mut recv).await?;
        Ok((result, recv))
    }

    pub async fn refs(&self) -> Result<BTreeMap<String, String>, HubError> {
        let result = self.ask::<RefsResult>(Op::Refs).await?;
        // Names go back to Git in the remote-helper protocol and values onto `git`
        // command lines: a hub that answers a name holding a newline or a value such as
        // `--output=FILE` is refused here, before either happens.
        if let Some((name, value)) = result
            .refs
            .iter()
            .find(|(name, value)| !valid_ref_name(name) || !valid_oid(value))
        {
            return Err(transport(format!(
                "{}: the hub answered an invalid ref ({name:?} at {value:?}); refusing its whole answer",
                self.url
            )));
        }
        Ok(result.refs)
    }

    /// Which of `ids` the hub's repository lacks (under the current key, in an encrypted
    /// repository: what is stored only under an older one is sent again).
    pub async fn missing(&self, ids: &[ChunkId]) -> Result<Vec<ChunkId>, HubError> {
        // Nothing to ask, so no key needed: a member without one still pushes commits
        // that add no media.
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let Some(secret) = self.sealing()? else {
            return self.missing_on_hub(ids).await;
        };
        let locators: Vec<ChunkId> = ids.iter().map(|id| secret.locator(id)).collect();
        let ids_of: std::collections::HashMap<ChunkId, ChunkId> =
            locators.iter().copied().zip(ids.iter().copied()).collect();
        Ok(self
            .missing_on_hub(&locators)
            .await?
            .iter()
            .filter_map(|l| ids_of.get(l).copied())
            .collect())
    }

    /// Which of the ids the hub stores objects under (content ids, or locators) it lacks.
    async fn missing_on_hub(&self, ids: &[ChunkId]) -> Result<Vec<ChunkId>, HubError> {
        let mut out = Vec::new();
        for batch in ids.chunks(8192) {
            let result = self
                .ask::<MissingResult>(Op::Missing {
                    ids: ids_to_hex(batch),
                })
                .await?;
            out.extend(ids_from_hex(&result.missing).map_err(transport)?);
        }
        Ok(out)
    }

    /// Objects the hub lost (a scrub found its copies corrupt) and asks this
    /// repository's pushers to send again. A hub from before the op, or an encrypted
    /// repository (where the hub knows objects by locators this client would have to map
    /// back), asks for none.
    pub async fn wanted(&self) -> Result<Vec<ChunkId>, HubError> {
        // An encrypted repository's objects are known to the hub by keyed locators, not
        // by the ids this store holds them under; and a member without a key (who may
        // still push commits that add no media) must not be refused here.
        if self.keyring.is_some() {
            return Ok(Vec::new());
        }
        match self.ask::<dits_wire::wire::WantedResult>(Op::Wanted).await {
            Ok(result) => ids_from_hex(&result.wanted).map_err(transport),
            // A hub that does not know the op.
            Err(HubError::Refused {
                code: ErrorCode::BadRequest,
                ..
            }) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Uploads objects as they come out of `objects` (id, plain length, sealed bytes) on one
    /// stream; once the channel closes the hub stores them as one pack and makes it durable
    /// before answering. Returns its answer: objects received, those new to the repository,
    /// bytes received.
    /// The sender fills the channel while earlier objects are on the wire, so memory holds
    /// only what the channel bounds, not the whole batch.
    pub async fn put_object_stream<T: OutgoingObject>(
        &self,
        mut objects: tokio::sync::mpsc::Receiver<T>,
    ) -> Result<PutResult, HubError> {
        let secret = self.sealing()?.cloned();
        let (mut send, mut recv) = self.open(Op::Put).await?;
        while let Some(object) = objects.recv().await {
            let (id, plain_len, envelope) = object.parts();
            // `object` (and whatever it holds, such as a share of a read-ahead budget)
            // is dropped once it is on the wire.
            let written = match &secret {
                None => write_object(&mut send, &id, plain_len, envelope).await,
                Some(secret) => {
                    let sealed = secret.seal(&id, plain_len, envelope);
                    write_object(&mut send, &secret.locator(&id), 0, &sealed).await
                }
            };
            if let Err(e) = written {
                // The hub may have refused early (auth); its answer says why.
                return match self.answer::<PutResult>(&mut recv).await {
                    Err(refused @ HubError::Refused { .. }) => Err(refused),
                    _ => Err(transport(format!("{}: uploading: {e}", self.url))),
                };
            }
        }
        send.finish().map_err(transport)?;
        self.answer(&mut recv).await
    }

    /// Asks for `ids` and returns the answer as a stream of objects as sent, read one at
    /// a time: the caller decides how many it holds (see `transfer::download`).
    pub async fn get_object_stream(&self, ids: &[ChunkId]) -> Result<ObjectStream, HubError> {
        let (want, opening) = match &self.keyring {
            None => (ids.to_vec(), None),
            Some(keyring) => {
                let generations = self.locate(keyring, ids).await?;
                let want = ids
                    .iter()
                    .zip(&generations)
                    .map(|(id, &g)| keyring.secret(g).expect("a held generation").locator(id))
                    .collect();
                let opening = Opening {
                    keyring: keyring.clone(),
                    objects: ids.iter().copied().zip(generations).collect(),
                };
                (want, Some(opening))
            }
        };
        let (_, recv) = self
            .call::<dits_wire::wire::GetResult>(Op::Get {
                ids: ids_to_hex(&want),
            })
            .await?;
        Ok(ObjectStream {
            url: self.url.clone(),
            recv,
            want,
            opening,
            next: 0,
        })
    }

    /// Whether the repository is encrypted (objects travel sealed, by locator).
    pub fn encrypted(&self) -> bool {
        self.keyring.is_some()
    }

    /// Signed URLs to read `ids` straight from the hub's object store, or `direct:
    /// false` (see `crate::direct`).
    pub async fn get_urls(&self, ids: &[ChunkId]) -> Result<GetUrlsResult, HubError> {
        self.ask(Op::GetUrls {
            ids: ids_to_hex(ids),
        })
        .await
    }

    /// A signed URL to upload a pack of `bytes` bytes straight to the object store.
    pub async fn put_url(&self, bytes: u64) -> Result<PutUrlResult, HubError> {
        self.ask(Op::PutUrl { bytes }).await
    }

    /// Declares what directly uploaded pack `upload` holds; the hub verifies it.
    pub async fn put_done(&self, upload: &str, objects: Vec<DirectObject>) -> Result<(), HubError> {
        self.ask::<Done>(Op::PutDone {
            upload: upload.to_string(),
            objects,
        })
        .await
        .map(|_| ())
    }

    /// How far the hub is in verifying `uploads`.
    pub async fn put_status(&self, uploads: &[String]) -> Result<PutStatusResult, HubError> {
        self.ask(Op::PutStatus {
            uploads: uploads.to_vec(),
        })
        .await
    }

    /// The key generation each of `ids` is stored under on the hub: with one held, that
    /// one; with more, the newest the hub holds it under (one `missing` per generation
    /// tried). One the hub holds under none is asked for under the newest, so the hub's
    /// refusal names it.
    async fn locate(&self, keyring: &Keyring, ids: &[ChunkId]) -> Result<Vec<u32>, HubError> {
        let held: Vec<(u32, &RepoSecret)> = keyring.held().collect();
        let Some(&(newest, _)) = held.first() else {
            return Err(HubError::NoKey(
                dits_core::keyring::KeyError::NoKey.to_string(),
            ));
        };
        let mut found: Vec<Option<u32>> = vec![None; ids.len()];
        if held.len() > 1 {
            let mut left: Vec<usize> = (0..ids.len()).collect();
            for &(generation, secret) in &held {
                if left.is_empty() {
                    break;
                }
                let locators: Vec<ChunkId> =
                    left.iter().map(|&i| secret.locator(&ids[i])).collect();
                let absent: std::collections::HashSet<ChunkId> =
                    self.missing_on_hub(&locators).await?.into_iter().collect();
                let mut still = Vec::new();
                for (i, locator) in left.into_iter().zip(&locators) {
                    if absent.contains(locator) {
                        still.push(i);
                    } else {
                        found[i] = Some(generation);
                    }
                }
                left = still;
            }
        }
        Ok(found.into_iter().map(|g| g.unwrap_or(newest)).collect())
    }

    /// The secret new objects are sealed under: `None` for an unencrypted repository.
    fn sealing(&self) -> Result<Option<&RepoSecret>, HubError> {
        match &self.keyring {
            None => Ok(None),
            Some(k) => k.sealing().map_err(|e| HubError::NoKey(e.to_string())),
        }
    }

    /// Seals and opens objects with `keyring` from now on (for this hub and the further
    /// connections made from it).
    pub fn set_keyring(&mut self, keyring: Keyring) {
        self.keyring = keyring.is_encrypted().then(|| Arc::new(keyring));
    }

    pub fn keyring(&self) -> Keyring {
        self.keyring
            .as_deref()
            .cloned()
            .unwrap_or_else(Keyring::plain)
    }

    /// The repository's encryption as this user may know it.
    pub async fn keys(&self) -> Result<KeysResult, HubError> {
        self.ask::<KeysResult>(Op::Keys).await
    }

    pub async fn register_key(&self, public_key: &str) -> Result<(), HubError> {
        self.call::<Done>(Op::KeyRegister {
            public_key: public_key.to_string(),
        })
        .await
        .map(drop)
    }

    pub async fn change_keys(&self, change: KeyChangeRequest) -> Result<(), HubError> {
        self.call::<Done>(Op::KeyChange { change }).await.map(drop)
    }

    /// Downloads `ids`, handing each (verified) object to `sink` as it arrives. If the
    /// connection dies, asks again over a new one for those not yet handed over.
    pub async fn get_objects<F>(&self, ids: &[ChunkId], mut sink: F) -> Result<(), HubError>
    where
        F: FnMut(ChunkId, Vec<u8>) -> Result<(), HubError>,
    {
        let mut done = 0;
        loop {
            let generation = self.generation();
            let answer = self
                .get_objects_from(&ids[done..], &mut sink, &mut done)
                .await;
            if self.again(generation, answer).await?.is_some() {
                return Ok(());
            }
        }
    }

    /// Downloads `ids` into `sink`, counting in `done` each object handed over.
    async fn get_objects_from<F>(
        &self,
        ids: &[ChunkId],
        sink: &mut F,
        done: &mut usize,
    ) -> Result<(), HubError>
    where
        F: FnMut(ChunkId, Vec<u8>) -> Result<(), HubError>,
    {
        if ids.is_empty() {
            return Ok(());
        }
        let mut objects = self.get_object_stream(ids).await?;
        while let Some(object) = objects.next().await? {
            let bytes = object.open().map_err(|_| objects.corrupt(&object.id))?;
            sink(object.id, bytes)?;
            *done += 1;
        }
        Ok(())
    }

    /// Uploads a Git pack; again whole over a new connection if the connection dies (the
    /// hub names a pack by its content, so a second copy is the same pack).
    pub async fn put_git_pack(&self, pack: &[u8]) -> Result<String, HubError> {
        loop {
            let generation = self.generation();
            let answer = self.put_git_pack_once(pack).await;
            if let Some(id) = self.again(generation, answer).await? {
                return Ok(id);
            }
        }
    }

    async fn put_git_pack_once(&self, pack: &[u8]) -> Result<String, HubError> {
        let (mut send, mut recv) = self.open(Op::PutGitPack).await?;
        if let Err(e) = send.write_all(pack).await {
            return match self.answer::<PutGitPackResult>(&mut recv).await {
                Err(refused @ HubError::Refused { .. }) => Err(refused),
                _ => Err(transport(format!(
                    "{}: uploading Git objects: {e}",
                    self.url
                ))),
            };
        }
        send.finish().map_err(transport)?;
        let result: PutGitPackResult = self.answer(&mut recv).await?;
        Ok(result.id)
    }

    pub async fn git_packs(&self, have: &[String]) -> Result<Vec<String>, HubError> {
        let result = self
            .ask::<GitPacksResult>(Op::GitPacks {
                have: have.to_vec(),
            })
            .await?;
        Ok(result.packs)
    }

    /// Git pack `id`, fetched again whole if the connection dies on the way (Git packs
    /// hold commits, trees and pointers, not media, so they are small).
    pub async fn get_git_pack(&self, id: &str) -> Result<Vec<u8>, HubError> {
        loop {
            let generation = self.generation();
            let answer = self.get_git_pack_once(id).await;
            if let Some(pack) = self.again(generation, answer).await? {
                return Ok(pack);
            }
        }
    }

    async fn get_git_pack_once(&self, id: &str) -> Result<Vec<u8>, HubError> {
        let (result, mut recv) = self
            .call::<GetGitPackResult>(Op::GetGitPack { id: id.to_string() })
            .await?;
        let size = result.size;
        let mut bytes = Vec::with_capacity(size.min(1 << 30) as usize);
        AsyncReadExt::read_to_end(&mut recv, &mut bytes)
            .await
            .map_err(transport)?;
        if bytes.len() as u64 != size {
            return Err(transport(format!(
                "{}: Git pack {id} arrived truncated",
                self.url
            )));
        }
        Ok(bytes)
    }

    /// What the hub's workers made of the asset with recipe `recipe` (`kind`: poster,
    /// strip, proxy), checked against the hash the hub gives. Fetched again whole if the
    /// connection dies on the way.
    pub async fn get_derived(&self, recipe: &ChunkId, kind: &str) -> Result<Vec<u8>, HubError> {
        loop {
            let generation = self.generation();
            let answer = self.get_derived_once(recipe, kind).await;
            if let Some(bytes) = self.again(generation, answer).await? {
                return Ok(bytes);
            }
        }
    }

    async fn get_derived_once(&self, recipe: &ChunkId, kind: &str) -> Result<Vec<u8>, HubError> {
        let op = Op::GetDerived {
            recipe: recipe.to_hex(),
            kind: kind.to_string(),
        };
        let (result, mut recv) = self.call::<GetDerivedResult>(op).await?;
        let mut bytes = Vec::with_capacity(result.size.min(1 << 30) as usize);
        AsyncReadExt::read_to_end(&mut recv, &mut bytes)
            .await
            .map_err(transport)?;
        if bytes.len() as u64 != result.size {
            return Err(transport(format!(
                "{}: the {kind} of asset {} arrived truncated",
                self.url,
                recipe.short()
            )));
        }
        if ChunkId::of(&bytes).to_hex() != result.hash {
            // Not retried: the same bytes would come again.
            return Err(HubError::Untrusted(format!(
                "{}: the {kind} of asset {} does not match the hash the hub gave",
                self.url,
                recipe.short()
            )));
        }
        Ok(bytes)
    }

    pub async fn update_refs(
        &self,
        updates: Vec<RefUpdate>,
        packs: Vec<String>,
        recipes: Vec<ChunkId>,
        atomic: bool,
    ) -> Result<Vec<RefResult>, HubError> {
        // Without recipes no key is needed (a member without one pushes commits that add
        // no media).
        let recipes = if recipes.is_empty() {
            recipes
        } else {
            match self.sealing()? {
                None => recipes,
                Some(secret) => recipes.iter().map(|id| secret.locator(id)).collect(),
            }
        };
        let (result, _) = self
            .call::<UpdateRefsResult>(Op::UpdateRefs {
                updates,
                packs,
                recipes: ids_to_hex(&recipes),
                atomic,
            })
            .await?;
        Ok(result.results)
    }

    /// Takes the lock on `path` (optionally only for pushes to `branch`).
    pub async fn lock(&self, path: &str, branch: Option<&str>) -> Result<Lock, HubError> {
        let (result, _) = self
            .call::<LockResult>(Op::LockCreate {
                path: path.to_string(),
                branch: branch.map(str::to_string),
            })
            .await?;
        Ok(result.lock)
    }

    /// Every lock matching the filters, following pages to the end.
    pub async fn locks(
        &self,
        path: Option<&str>,
        owner: Option<&str>,
    ) -> Result<Vec<Lock>, HubError> {
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .ask::<LockListResult>(Op::LockList {
                    path: path.map(str::to_string),
                    id: None,
                    owner: owner.map(str::to_string),
                    cursor: cursor.take(),
                    limit: Some(1000),
                })
                .await?;
            out.extend(page.locks);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return Ok(out),
            }
        }
    }

    /// Locks on `paths` (all locks when `None`), split into (ours, theirs).
    pub async fn verify_locks(
        &self,
        paths: Option<Vec<String>>,
    ) -> Result<(Vec<Lock>, Vec<Lock>), HubError> {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        let mut cursor = None;
        loop {
            let page = self
                .ask::<LockVerifyResult>(Op::LockVerify {
                    paths: paths.clone(),
                    cursor: cursor.take(),
                    limit: Some(1000),
                })
                .await?;
            ours.extend(page.ours);
            theirs.extend(page.theirs);
            match page.next_cursor {
                Some(c) if paths.is_none() => cursor = Some(c),
                _ => return Ok((ours, theirs)),
            }
        }
    }

    /// Releases lock `id`; returns it and, when forced, who forced it.
    pub async fn unlock(&self, id: &str, force: bool) -> Result<(Lock, Option<String>), HubError> {
        let (result, _) = self
            .call::<UnlockResult>(Op::LockUnlock {
                id: id.to_string(),
                force,
            })
            .await?;
        Ok((result.lock, result.forced_by))
    }

    /// Closes the connection and waits until the hub has heard (every connection over
    /// this hub's UDP socket: close those of [`Hub::another`] first, or this waits for
    /// them to time out).
    pub async fn close(&self) {
        self.close_connection();
        self.link.endpoint.wait_idle().await;
    }

    /// Closes the connection without waiting.
    pub fn close_connection(&self) {
        let (_, connection) = self.link.current();
        tracing::debug!("closing {}: {:?}", self.url, connection.stats());
        connection.close(0u32.into(), b"done");
    }
}

/// An object to upload: its id, plaintext length and sealed envelope.
pub trait OutgoingObject: Send {
    fn parts(&self) -> (ChunkId, u32, &[u8]);
}

impl OutgoingObject for (ChunkId, u32, Vec<u8>) {
    fn parts(&self) -> (ChunkId, u32, &[u8]) {
        (self.0, self.1, &self.2)
    }
}

/// The keys that open an encrypted repository's `get` answer, and each wanted object's
/// content id and key generation.
struct Opening {
    keyring: Arc<Keyring>,
    objects: Vec<(ChunkId, u32)>,
}

/// One `get` answer: the objects asked for, in the order asked for.
pub struct ObjectStream {
    url: RemoteUrl,
    recv: quinn::RecvStream,
    want: Vec<ChunkId>,
    /// In an encrypted repository, how to open what arrives (`want` then holds locators).
    opening: Option<Opening>,
    /// How many of `want` have arrived.
    next: usize,
}

impl ObjectStream {
    /// The next object as sent, *not yet verified* (see [`WireObject::verify`]), or
    /// `None` after the last one asked for. An object other than the one asked for next
    /// is an error.
    pub async fn next(&mut self) -> Result<Option<WireObject>, HubError> {
        let Some(&want) = self.want.get(self.next) else {
            return Ok(None);
        };
        self.next += 1;
        let object = read_object(&mut self.recv)
            .await
            .map_err(|e| transport(format!("{}: downloading: {e}", self.url)))?
            .ok_or_else(|| {
                transport(format!(
                    "{}: the hub stopped sending before object {}",
                    self.url,
                    want.short()
                ))
            })?;
        if object.id != want {
            return Err(transport(format!(
                "{}: the hub sent object {} where {} was asked for",
                self.url,
                object.id.short(),
                want.short()
            )));
        }
        let Some(opening) = &self.opening else {
            return Ok(Some(object));
        };
        let (id, generation) = &opening.objects[self.next - 1];
        let secret = opening
            .keyring
            .secret(*generation)
            .expect("a held generation");
        // Opening authenticates the bytes; the caller then checks the envelope against
        // the content id as for any object.
        let (plain_len, envelope) = secret
            .open(id, &object.sealed)
            .map_err(|e| transport(format!("{}: {e}", self.url)))?;
        Ok(Some(WireObject {
            id: *id,
            plain_len,
            sealed: envelope,
        }))
    }

    /// The error for object `id` of this stream when its bytes fail verification.
    pub fn corrupt(&self, id: &ChunkId) -> HubError {
        transport(format!(
            "{}: object {} arrived corrupt (its bytes do not hash to its id)",
            self.url,
            id.short()
        ))
    }
}

fn resolve(url: &RemoteUrl) -> Result<SocketAddr, HubError> {
    (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| transport(format!("{}: cannot resolve {}: {e}", url, url.host)))?
        .next()
        .ok_or_else(|| transport(format!("{url}: {} has no address", url.host)))
}

/// Why a connection attempt failed.
#[derive(Debug)]
enum Dial {
    /// The hub answered and the handshake failed (or the endpoint could not start one).
    Refused(String),
    /// Nothing within the time given.
    NoAnswer(Duration),
}

impl std::fmt::Display for Dial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dial::Refused(e) => f.write_str(e),
            Dial::NoAnswer(within) => write!(f, "no answer within {} s", within.as_secs()),
        }
    }
}

/// One connection attempt. The URL's host (a name or an address) is what a CA-signed
/// certificate must name; a pinned certificate is matched by fingerprint alone.
async fn dial(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    url: &RemoteUrl,
    within: Duration,
) -> Result<quinn::Connection, Dial> {
    let connecting = endpoint
        .connect(addr, &url.host)
        .map_err(|e| Dial::Refused(e.to_string()))?;
    match tokio::time::timeout(within, connecting).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(Dial::Refused(e.to_string())),
        Err(_) => Err(Dial::NoAnswer(within)),
    }
}

fn untrusted_message(url: &RemoteUrl, seen: &str, pinned: Option<&str>) -> String {
    match pinned {
        Some(p) => format!(
            "{url}: the hub's certificate is {seen} but dits.{}.fingerprint pins {p}. If the hub's certificate was replaced on purpose, update the pin:\n  git config --global dits.{}.fingerprint {seen}",
            url.base(),
            url.base()
        ),
        None => format!(
            "{url}: the hub's certificate ({seen}) is not trusted yet. If it matches the fingerprint `dits-hub serve` printed, pin it:\n  git config --global dits.{}.fingerprint {seen}\nor trust it on first use with GIT_DITS_TRUST_ON_FIRST_USE=1. If a CA signed it, point Git at that CA:\n  git config --global dits.caInfo /path/to/ca.pem",
            url.base()
        ),
    }
}

/// Keeps `Arc` in the public API surface simple for callers sharing one hub.
pub type SharedHub = Arc<Hub>;
