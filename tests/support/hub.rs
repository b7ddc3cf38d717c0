//! A `dits-hub serve` process (on the embedded default, or on the scale-out backends in
//! the second pass), and the client-side settings that trust it and log in to it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::backends::{s3_keys, s3_sizes, scale_out_env};
use crate::bins;
use crate::env::TestEnv;

/// A `dits-hub serve` process on a free loopback port, killed on drop.
pub struct HubProcess {
    pub data: PathBuf,
    pub port: u16,
    pub fingerprint: String,
    /// The Redis key namespace, when locks are in Redis.
    pub lock_namespace: Option<String>,
    /// Backend settings (`DITS_HUB_*`, `AWS_*`) the admin commands share with `serve`.
    pub envs: Vec<(String, String)>,
    child: std::process::Child,
}

impl HubProcess {
    pub fn start_on(data: &Path, port: u16) -> HubProcess {
        Self::start_with(data, port, &[])
    }

    /// With extra `serve` arguments (e.g. a certificate).
    pub fn start_with(data: &Path, port: u16, serve_args: &[&str]) -> HubProcess {
        Self::start_configured(data, port, serve_args, &[])
    }

    /// With extra `serve` arguments and environment (e.g. S3 settings).
    pub fn start_configured(
        data: &Path,
        port: u16,
        serve_args: &[&str],
        envs: &[(String, String)],
    ) -> HubProcess {
        use std::io::BufRead;
        let mut envs = envs.to_vec();
        envs.extend(scale_out_env(data, serve_args, &envs));
        let mut child = Command::new(bins::dits_hub())
            .args(["--data"])
            .arg(data)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(serve_args)
            .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("starting dits-hub");
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut port = 0;
        let mut fingerprint = String::new();
        let mut lock_namespace = None;
        while port == 0 || fingerprint.is_empty() {
            let line = lines
                .next()
                .expect("hub exited before announcing itself")
                .unwrap();
            if let Some(rest) = line.split("(namespace ").nth(1) {
                lock_namespace = rest.split([',', ')']).next().map(str::to_string);
            }
            if let Some(rest) = line.strip_prefix("dits-hub: listening on ") {
                let addr = rest.split_whitespace().next().unwrap();
                port = addr.rsplit(':').next().unwrap().parse().unwrap();
            } else if let Some(fp) = line.strip_prefix("dits-hub: certificate fingerprint ") {
                fingerprint = fp.trim().to_string();
            }
        }
        // Keep draining stdout so the hub never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        HubProcess {
            data: data.to_path_buf(),
            port,
            fingerprint,
            lock_namespace,
            envs,
            child,
        }
    }

    pub fn admin(&self, args: &[&str]) -> String {
        self.admin_with_input(args, "")
    }

    /// An admin command given `input` on standard input; its standard output.
    pub fn admin_with_input(&self, args: &[&str], input: &str) -> String {
        use std::io::Write;
        let mut child = Command::new(bins::dits_hub())
            .arg("--data")
            .arg(&self.data)
            .args(args)
            .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "dits-hub {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Chunk packs the hub has made durable so far (one per upload batch), in its data
    /// directory or its S3 bucket.
    pub fn chunk_packs(&self) -> usize {
        match self.s3_location() {
            Some((endpoint, bucket, at)) => {
                s3_keys(&endpoint, &bucket, &format!("{at}chunks/")).len()
            }
            None => std::fs::read_dir(self.data.join("objects/chunks"))
                .map(|d| d.filter(|e| e.is_ok()).count())
                .unwrap_or(0),
        }
    }

    /// The S3 endpoint, bucket and key prefix the hub keeps blobs under, if it uses S3.
    fn s3_location(&self) -> Option<(String, String, String)> {
        let env = |k: &str| {
            self.envs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        let objects = env("DITS_HUB_OBJECTS")?;
        let endpoint = env("AWS_ENDPOINT_URL")?;
        let location = objects.trim_start_matches("s3://");
        let (bucket, at) = match location.split_once('/') {
            Some((b, p)) => (b.to_string(), format!("{}/", p.trim_matches('/'))),
            None => (location.to_string(), String::new()),
        };
        Some((endpoint, bucket, at))
    }

    /// An admin command, not yet run (for ones a test expects to fail, or kills).
    pub fn admin_command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bins::dits_hub());
        c.arg("--data")
            .arg(&self.data)
            .args(args)
            .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        c
    }

    /// Bytes of the blobs under `prefix` (`chunks/`, `git/`) in the hub's data directory
    /// or its S3 bucket, read from storage itself.
    pub fn stored_bytes(&self, prefix: &str) -> u64 {
        if let Some((endpoint, bucket, at)) = self.s3_location() {
            return s3_sizes(&endpoint, &bucket, &format!("{at}{prefix}"))
                .iter()
                .map(|(_, size)| size)
                .sum();
        }
        let mut total = 0;
        let mut dirs = vec![self.data.join("objects").join(prefix)];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let meta = entry.metadata().unwrap();
                if meta.is_dir() {
                    dirs.push(entry.path());
                } else {
                    total += meta.len();
                }
            }
        }
        total
    }

    /// Flips one byte in the middle of the largest chunk pack, in the data directory or
    /// the S3 bucket (read and written back whole), as failing storage would. Its key.
    pub fn flip_a_byte_in_a_chunk_pack(&self) -> String {
        if let Some((endpoint, bucket, at)) = self.s3_location() {
            let (key, _) = s3_sizes(&endpoint, &bucket, &format!("{at}chunks/"))
                .into_iter()
                .max_by_key(|(_, size)| *size)
                .expect("a chunk pack");
            // boto3 from moto's environment: curl's signed PUT reaches moto empty.
            let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../target/moto-venv/bin/python");
            let script = "import boto3, sys\n\
                s3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1')\n\
                body = bytearray(s3.get_object(Bucket=sys.argv[2], Key=sys.argv[3])['Body'].read())\n\
                body[len(body) // 2] ^= 0x55\n\
                s3.put_object(Bucket=sys.argv[2], Key=sys.argv[3], Body=bytes(body))\n";
            let out = Command::new(python)
                .args(["-c", script, &endpoint, &bucket, &key])
                .env("AWS_ACCESS_KEY_ID", "test")
                .env("AWS_SECRET_ACCESS_KEY", "test")
                .output()
                .expect("running moto's python");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            return key[at.len()..].to_string();
        }
        let dir = self.data.join("objects").join("chunks");
        let path = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .max_by_key(|p| std::fs::metadata(p).unwrap().len())
            .expect("a chunk pack");
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x55;
        std::fs::write(&path, &bytes).unwrap();
        format!("chunks/{}", path.file_name().unwrap().to_string_lossy())
    }

    /// The storage class of each chunk pack: on S3 what a HEAD request says (absent:
    /// `STANDARD`); in the data directory `cold` for packs under `objects/cold/`, else
    /// `STANDARD`.
    pub fn chunk_pack_classes(&self) -> Vec<String> {
        if let Some((endpoint, bucket, at)) = self.s3_location() {
            return s3_keys(&endpoint, &bucket, &format!("{at}chunks/"))
                .iter()
                .map(|key| {
                    // A signed HEAD (moto refuses an anonymous one), with the test keys.
                    let out = Command::new("curl")
                        .args(["-sI", "--aws-sigv4", "aws:amz:us-east-1:s3"])
                        .args(["--user", "test:test"])
                        .arg(format!("{endpoint}/{bucket}/{key}"))
                        .output()
                        .expect("running curl");
                    String::from_utf8_lossy(&out.stdout)
                        .lines()
                        .find_map(|l| {
                            let (name, value) = l.split_once(':')?;
                            name.eq_ignore_ascii_case("x-amz-storage-class")
                                .then(|| value.trim().to_string())
                        })
                        .unwrap_or_else(|| "STANDARD".to_string())
                })
                .collect();
        }
        let count = |dir: &str| {
            std::fs::read_dir(self.data.join(dir))
                .map(|d| d.count())
                .unwrap_or(0)
        };
        let mut classes = vec!["STANDARD".to_string(); count("objects/chunks")];
        classes.extend(vec!["cold".to_string(); count("objects/cold/chunks")]);
        classes
    }

    pub fn url(&self, repo: &str) -> String {
        format!("dits://127.0.0.1:{}/{repo}", self.port)
    }

    pub fn base(&self) -> String {
        format!("dits://127.0.0.1:{}", self.port)
    }

    /// The hub process's peak resident memory so far (VmHWM), in MiB.
    pub fn peak_rss_mib(&self) -> u64 {
        peak_rss_mib(self.child.id())
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TestEnv {
    /// A hub on `data` (started with `serve_args` and `envs`) where user alice owns
    /// alice/film, trusted by this HOME with alice's token; returns the hub and the token.
    pub fn alice_hub_on(
        &self,
        data: &Path,
        serve_args: &[&str],
        envs: &[(String, String)],
    ) -> (HubProcess, String) {
        let hub = HubProcess::start_configured(data, 0, serve_args, envs);
        let token = hub.admin(&["user", "add", "alice"]);
        hub.admin(&["repo", "create", "alice/film"]);
        self.trust_hub(&hub, "alice", &token);
        (hub, token)
    }

    /// [`Self::alice_hub_on`] with the data in `hub-data` and no extra settings.
    pub fn alice_hub(&self) -> (HubProcess, String) {
        self.alice_hub_on(&self.dir.path().join("hub-data"), &[], &[])
    }

    /// `git clone -q URL NAME` in the test directory with extra environment (e.g.
    /// GIT_DITS_SKIP_SMUDGE=1), whatever the outcome.
    pub fn clone_with(&self, url: &str, name: &str, envs: &[(&str, &str)]) -> Output {
        self.command("git", self.dir.path(), &["clone", "-q", url, name])
            .envs(envs.iter().copied())
            .output()
            .expect("running git clone")
    }

    /// Pins the hub's certificate and stores `token` for it in this HOME's credential store.
    pub fn trust_hub(&self, hub: &HubProcess, user: &str, token: &str) {
        let cwd = self.dir.path();
        self.git(
            cwd,
            &[
                "config",
                "--global",
                &format!("dits.{}.fingerprint", hub.base()),
                &hub.fingerprint,
            ],
        );
        self.set_token(hub, user, token);
    }

    pub fn set_token(&self, hub: &HubProcess, user: &str, token: &str) {
        let cwd = self.dir.path();
        self.git(cwd, &["config", "--global", "credential.helper", "store"]);
        std::fs::write(
            self.home().join(".git-credentials"),
            format!("dits://{user}:{token}@127.0.0.1:{}\n", hub.port),
        )
        .unwrap();
    }
}

impl TestEnv {
    /// Pins every hub's certificate and stores `token` for `user` on each.
    pub fn trust_hubs(&self, hubs: &[&HubProcess], user: &str, token: &str) {
        let cwd = self.dir.path();
        let mut credentials = String::new();
        for hub in hubs {
            self.git(
                cwd,
                &[
                    "config",
                    "--global",
                    &format!("dits.{}.fingerprint", hub.base()),
                    &hub.fingerprint,
                ],
            );
            credentials.push_str(&format!("dits://{user}:{token}@127.0.0.1:{}\n", hub.port));
        }
        self.git(cwd, &["config", "--global", "credential.helper", "store"]);
        std::fs::write(self.home().join(".git-credentials"), credentials).unwrap();
    }
}

impl TestEnv {
    /// Trusts a relay on `port` in front of `hub` (see [`crate::lossy::LossyLink`]) as
    /// the hub itself, and stores `token` for `user` there beside the credentials
    /// already stored.
    pub fn trust_relay(&self, hub: &HubProcess, port: u16, user: &str, token: &str) {
        self.git(
            self.dir.path(),
            &[
                "config",
                "--global",
                &format!("dits.dits://127.0.0.1:{port}.fingerprint"),
                &hub.fingerprint,
            ],
        );
        let credentials = self.home().join(".git-credentials");
        let mut lines = std::fs::read_to_string(&credentials).unwrap_or_default();
        lines.push_str(&format!("dits://{user}:{token}@127.0.0.1:{port}\n"));
        std::fs::write(credentials, lines).unwrap();
    }
}

/// GET `path` from the HTTPS side of the hub on `port`: the status and the body.
pub fn https_get(port: u16, path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sk", "-w", "\n%{http_code}", "--max-time", "30"])
        .arg(format!("https://127.0.0.1:{port}/{path}"))
        .output()
        .expect("running curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// Process `pid`'s peak resident memory so far (VmHWM), in MiB.
pub fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kib / 1024
}

/// A certificate authority for CA-signed hubs: its certificate is also written to
/// `dir/ca.pem` (what `dits.caInfo` names).
pub fn test_ca(dir: &Path) -> (rcgen::Certificate, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Dits test CA");
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.join("ca.pem"), cert.pem()).unwrap();
    (cert, key)
}

/// A hub certificate for localhost and 127.0.0.1 signed by `ca`, written to
/// `dir/NAME.pem` and `dir/NAME.key`; returns the `serve` arguments that use it.
pub fn ca_signed(dir: &Path, ca: &(rcgen::Certificate, rcgen::KeyPair), name: &str) -> Vec<String> {
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .unwrap()
        .signed_by(&leaf_key, &ca.0, &ca.1)
        .unwrap();
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    vec![
        "--tls-cert".into(),
        cert.display().to_string(),
        "--tls-key".into(),
        key.display().to_string(),
    ]
}
