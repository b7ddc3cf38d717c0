//! The `dits-hub` command line. Settings come from flags, `DITS_HUB_*` variables or a TOML
//! file (`--config`), in that order of precedence.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::meta::{AccountChange, AuditEntry, Role};

#[derive(Parser)]
#[command(
    name = "dits-hub",
    version,
    about = "The Dits hub: refs, media chunks and locks for Dits repositories"
)]
struct Cli {
    /// Data directory: metadata (SQLite), objects, TLS certificate [default: dits-hub-data].
    #[arg(long, env = "DITS_HUB_DATA", global = true)]
    data: Option<PathBuf>,
    /// A TOML file with any of: data, listen, metadata, objects, locks, tls_cert, tls_key,
    /// transcode.
    #[arg(long, env = "DITS_HUB_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Keep metadata (users, repositories, refs, object index, locks) in PostgreSQL
    /// (postgres://USER[:PASSWORD]@HOST:PORT/DATABASE) instead of SQLite in the data
    /// directory, so several hub processes can serve the same repositories.
    #[arg(long, env = "DITS_HUB_METADATA", global = true)]
    metadata: Option<String>,
    #[command(subcommand)]
    command: Command,
}

/// The serve settings, shared by `serve`, `check-config` and `gc`.
#[derive(Args, Clone)]
struct ServeArgs {
    /// Address to listen on; port 0 picks a free one (printed at start) [default: 127.0.0.1:7443].
    #[arg(long, env = "DITS_HUB_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// Keep chunk and Git packs in S3-compatible storage (s3://BUCKET[/PREFIX]); the
    /// endpoint, region and credentials come from the usual AWS_* variables.
    #[arg(long, env = "DITS_HUB_OBJECTS")]
    objects: Option<String>,
    /// Keep locks in Redis (redis://HOST:PORT[/DB]), written through to the hub's
    /// database so a Redis restart loses none.
    #[arg(long, env = "DITS_HUB_LOCKS")]
    locks: Option<String>,
    /// Certificate chain (PEM) from a CA; clients then need no fingerprint pin.
    #[arg(long, env = "DITS_HUB_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) for --tls-cert.
    #[arg(long, env = "DITS_HUB_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Collect garbage this often (e.g. 6h; see `dits-hub gc`) [default: never].
    #[arg(long, env = "DITS_HUB_GC_EVERY", value_parser = parse_duration)]
    gc_every: Option<i64>,
    /// Run the cold-tier reaper this often (e.g. 1d; see `dits-hub reaper`) [default: never].
    #[arg(long, env = "DITS_HUB_REAPER_EVERY", value_parser = parse_duration)]
    reaper_every: Option<i64>,
    /// Queue a scrub of every stored pack this often (e.g. 7d; see `dits-hub scrub`)
    /// [default: never].
    #[arg(long, env = "DITS_HUB_SCRUB_EVERY", value_parser = parse_duration)]
    scrub_every: Option<i64>,
    /// Job workers to run inside `serve` (0: leave the queue to `dits-hub worker`
    /// processes).
    #[arg(long, env = "DITS_HUB_WORKERS", default_value_t = 1)]
    workers: u32,
    /// Queue a transcode of each new video a push brings: a poster, a thumbnail strip
    /// and a 540p H.264 proxy (`git dits proxy`), made by workers with FFmpeg.
    #[arg(long, env = "DITS_HUB_TRANSCODE")]
    transcode: bool,
    /// Let clients move object bytes straight to and from the S3 store through signed
    /// URLs (needs --objects s3://…); workers verify what they upload before it counts.
    #[arg(long, env = "DITS_HUB_DIRECT_TRANSFERS")]
    direct_transfers: bool,
    /// How long a signed URL lasts (e.g. 15m).
    #[arg(long, env = "DITS_HUB_DIRECT_URL_TTL", value_parser = parse_duration, default_value = "15m")]
    direct_url_ttl: i64,
    /// How long a browser stays signed in to the pages (e.g. 12h); the hub refuses the
    /// session afterwards whatever the cookie says.
    #[arg(long, env = "DITS_HUB_SESSION_TTL", value_parser = parse_duration, default_value = "12h")]
    session_ttl: i64,
    /// What garbage collection spares: objects seen, and blobs dead, more recently than
    /// this (e.g. 1d, 12h, 30m, 90s).
    #[arg(long, env = "DITS_HUB_GC_GRACE", value_parser = parse_duration, default_value = "1d")]
    gc_grace: i64,
}

/// A duration in seconds from `90`, `90s`, `30m`, `12h` or `7d`.
fn parse_duration(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let n: i64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a number with s, m, h or d (e.g. 12h)"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("{text:?}: the unit is one of s, m, h, d")),
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too long"))
}

/// The TOML configuration file.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data: Option<PathBuf>,
    listen: Option<std::net::SocketAddr>,
    metadata: Option<String>,
    objects: Option<String>,
    locks: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    transcode: Option<bool>,
    direct_transfers: Option<bool>,
}

fn file_config(path: Option<&PathBuf>) -> anyhow::Result<FileConfig> {
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading config {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))
}

fn data_dir(cli: &Cli, file: &FileConfig) -> PathBuf {
    cli.data
        .clone()
        .or_else(|| file.data.clone())
        .unwrap_or_else(|| PathBuf::from("dits-hub-data"))
}

/// Flags and environment over the file, over the defaults.
fn serve_options(cli: &Cli, args: &ServeArgs) -> anyhow::Result<crate::server::ServeOptions> {
    let file = file_config(cli.config.as_ref())?;
    let options = crate::server::ServeOptions {
        data: data_dir(cli, &file),
        listen: args
            .listen
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:7443".parse().expect("valid")),
        metadata: cli.metadata.clone().or(file.metadata),
        objects: args.objects.clone().or(file.objects),
        locks: args.locks.clone().or(file.locks),
        tls_cert: args.tls_cert.clone().or(file.tls_cert),
        tls_key: args.tls_key.clone().or(file.tls_key),
        gc_every: args.gc_every.map(|s| s.max(1) as u64),
        gc_grace: args.gc_grace,
        reaper_every: args.reaper_every.map(|s| s.max(60) as u64),
        scrub_every: args.scrub_every.map(|s| s.max(1) as u64),
        workers: args.workers,
        transcode: args.transcode || file.transcode.unwrap_or(false),
        direct_ttl: (args.direct_transfers || file.direct_transfers.unwrap_or(false))
            .then_some(args.direct_url_ttl.clamp(60, 7 * 86400) as u64),
        session_ttl: args.session_ttl.clamp(1, 30 * 86400) as u32,
    };
    anyhow::ensure!(
        options.tls_cert.is_some() == options.tls_key.is_some(),
        "give both tls_cert and tls_key, or neither (for a self-signed certificate)"
    );
    Ok(options)
}

#[derive(Subcommand)]
enum Command {
    /// Serve QUIC (UDP) and HTTPS (TCP) on one address.
    Serve(ServeArgs),
    /// Check the settings and connect to each backend, reporting each; exit 1 if any fails.
    CheckConfig(ServeArgs),
    /// Users and their tokens.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Repositories and their members.
    Repo {
        #[command(subcommand)]
        command: RepoCommand,
    },
    /// Delete what no ref of any repository reaches: objects, then packs (rewritten when
    /// mostly garbage) and blobs dead for the grace period. One collector runs at a time
    /// across every hub on the metadata store.
    Gc {
        #[command(flatten)]
        serve: ServeArgs,
        /// Print what would be freed; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Only drop what OWNER/NAME's refs no longer reach (objects other repositories
        /// hold stay).
        #[arg(long)]
        repo: Option<String>,
        /// One JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Move packs nobody has read for their repositories' policy age (`repo cold`) to the
    /// policy's storage class.
    Reaper {
        #[command(flatten)]
        serve: ServeArgs,
        /// Print what would move; move nothing.
        #[arg(long)]
        dry_run: bool,
        /// One JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Work jobs from the queue (scrubs): any number of workers, on any hosts sharing
    /// the metadata store and object storage.
    Worker {
        #[command(flatten)]
        serve: ServeArgs,
        /// Give up a job's claim if not renewed for this long (another worker then takes
        /// it over).
        #[arg(long, value_parser = parse_duration, default_value = "60s")]
        lease: i64,
        /// Exit once no job is runnable.
        #[arg(long)]
        once: bool,
        /// Only these kinds of job (comma-separated: scrub, transcode, verify).
        #[arg(long, value_delimiter = ',')]
        kinds: Vec<String>,
    },
    /// List the job queue, newest first.
    Jobs {
        /// Only jobs in this state (queued, running, done, dead).
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// One JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Queue a scrub of every stored pack (workers re-read and re-hash each object).
    Scrub {
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Report the objects scrubs found corrupt or missing; exit 1 if one is not stored
    /// again yet.
    Fsck {
        /// One JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Print the certificate fingerprint clients pin (creates the certificate if needed).
    Fingerprint,
    /// Print the operators' audit log (users, tokens, repositories, members), newest first.
    AuditLog {
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// One JSON document.
        #[arg(long)]
        json: bool,
    },
}

/// Who runs an admin command, for the audit log: the operating-system user.
fn actor() -> String {
    ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "operator".into())
}

/// The change a `user` subcommand other than `add` makes.
fn account_change(command: &UserCommand) -> anyhow::Result<AccountChange> {
    let user = |name: &String| name.clone();
    Ok(match command {
        UserCommand::Add { .. } => unreachable!("add is not a change to an account"),
        UserCommand::Token { name } => AccountChange::IssueToken { user: user(name) },
        UserCommand::RotateToken { name } => AccountChange::RotateTokens { user: user(name) },
        UserCommand::RevokeToken => {
            let mut token = String::new();
            std::io::stdin().read_line(&mut token)?;
            let token = token.trim().to_string();
            anyhow::ensure!(
                !token.is_empty(),
                "give the token to revoke on standard input"
            );
            AccountChange::RevokeToken { token }
        }
        UserCommand::RevokeTokens { name } => AccountChange::RevokeTokens { user: user(name) },
        UserCommand::Disable { name } => AccountChange::Disable { user: user(name) },
        UserCommand::Enable { name } => AccountChange::Enable { user: user(name) },
        UserCommand::Remove { name } => AccountChange::RemoveUser { user: user(name) },
    })
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user and print their token (shown once).
    Add { name: String },
    /// Issue NAME a further token (another machine) and print it; earlier ones stay valid.
    Token { name: String },
    /// Revoke every token of NAME and print one new one.
    RotateToken { name: String },
    /// Revoke one token, read from standard input (so it stays out of shell history).
    RevokeToken,
    /// Revoke every token of NAME.
    RevokeTokens { name: String },
    /// NAME can no longer sign in; tokens and memberships are kept for `enable`.
    Disable { name: String },
    /// Undo `disable`.
    Enable { name: String },
    /// Revoke NAME's tokens, remove their memberships and disable them (the name stays in
    /// lock and audit history).
    Remove { name: String },
}

#[derive(Subcommand)]
enum RepoCommand {
    /// Create OWNER/NAME; a user called OWNER becomes its admin.
    Create {
        repo: String,
        /// Encrypt its media: members' clients seal content under keys the hub only
        /// stores wrapped (an admin makes the first with `git dits key init`).
        #[arg(long)]
        encrypted: bool,
        /// Share the keys of key group NAME (implies --encrypted) [default: OWNER/NAME].
        #[arg(long, value_name = "NAME")]
        key_group: Option<String>,
    },
    /// Give USER a role (read, write or admin) in OWNER/NAME.
    Member {
        repo: String,
        user: String,
        #[arg(long, default_value = "write")]
        role: String,
    },
    /// Take USER's role in OWNER/NAME away.
    RemoveMember { repo: String, user: String },
    /// Delete OWNER/NAME: its refs, members, locks, history and Git packs now; the
    /// objects only it held at the next `dits-hub gc`.
    Delete {
        repo: String,
        /// Confirm: the repository cannot be restored.
        #[arg(long)]
        yes: bool,
    },
    /// Set OWNER/NAME's cold-tier policy: objects not read for AGE move to CLASS
    /// (STANDARD_IA, ONEZONE_IA, INTELLIGENT_TIERING or GLACIER_IR) when the reaper runs.
    Cold {
        repo: String,
        /// e.g. 30d.
        #[arg(long, value_parser = parse_duration, required_unless_present = "off")]
        after: Option<i64>,
        #[arg(long, default_value = "STANDARD_IA")]
        class: String,
        /// Remove the policy (what has moved stays where it is).
        #[arg(long, conflicts_with = "after")]
        off: bool,
    },
    /// Print OWNER/NAME's lock history: who locked, unlocked and force-unlocked what.
    LockLog { repo: String },
    /// Print OWNER/NAME's indexed commits, newest first, with the media each adds or changes.
    Log {
        repo: String,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// One JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Print OWNER/NAME's storage: media versions and their logical size, the objects it
    /// holds and their stored size, and the dedup ratio between the two.
    Stats {
        repo: String,
        /// One JSON document.
        #[arg(long)]
        json: bool,
    },
}

fn split_repo(repo: &str) -> anyhow::Result<(&str, &str)> {
    match repo.split_once('/') {
        Some((o, n)) if dits_wire::url::valid_name(o) && dits_wire::url::valid_name(n) => {
            Ok((o, n))
        }
        _ => anyhow::bail!("{repo:?}: expected OWNER/NAME (letters, digits, '-', '_', '.')"),
    }
}

/// A `--key-group` name: like a repository's, one or more names joined by '/'.
fn valid_key_group(group: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        group.split('/').all(dits_wire::url::valid_name),
        "{group:?}: key group names are letters, digits, '-', '_', '.' (parts joined by '/')"
    );
    Ok(group.to_string())
}

/// The id of OWNER/NAME, which must exist.
async fn existing_repo(
    meta: &dyn crate::meta::MetaStore,
    owner: &str,
    name: &str,
) -> anyhow::Result<i64> {
    meta.find_repo(owner, name)
        .await?
        .ok_or_else(|| anyhow::anyhow!("repository {owner}/{name} does not exist"))
}

/// The metadata store the settings name, for the admin commands.
async fn metadata(cli: &Cli) -> anyhow::Result<crate::backends::Metadata> {
    let file = file_config(cli.config.as_ref())?;
    let url = cli.metadata.clone().or(file.metadata.clone());
    crate::backends::open_metadata(&data_dir(cli, &file), url.as_deref()).await
}

pub fn main() -> std::process::ExitCode {
    tracing_init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dits-hub: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn tracing_init() {
    let filter = std::env::var("DITS_HUB_LOG").unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .try_init();
}

fn run(cli: Cli) -> anyhow::Result<()> {
    // Multi-threaded: requests are served in parallel; blocking storage work (SQLite,
    // fsync, git) runs on the runtime's blocking pool.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run_in_runtime(cli))
}

async fn run_in_runtime(cli: Cli) -> anyhow::Result<()> {
    let data = data_dir(&cli, &file_config(cli.config.as_ref())?);
    match &cli.command {
        Command::Serve(args) => crate::server::serve(serve_options(&cli, args)?).await,
        Command::CheckConfig(args) => {
            if !crate::server::check_config(&serve_options(&cli, args)?).await {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::User {
            command: UserCommand::Add { name },
        } => {
            if !dits_wire::url::valid_name(name) {
                anyhow::bail!("{name:?}: user names are letters, digits, '-', '_', '.'");
            }
            let meta = metadata(&cli).await?.meta;
            let token = meta.add_user(name).await?;
            meta.audit(&AuditEntry::now(&actor(), "user-add", name, ""))
                .await?;
            println!("{token}");
            Ok(())
        }
        Command::User { command } => {
            let change = account_change(command)?;
            let meta = metadata(&cli).await?.meta;
            match meta.change_account(&change, &actor()).await? {
                Some(token) => println!("{token}"),
                None => eprintln!("dits-hub: done ({})", change.action()),
            }
            Ok(())
        }
        Command::Repo {
            command:
                RepoCommand::Create {
                    repo,
                    encrypted,
                    key_group,
                },
        } => {
            let (owner, name) = split_repo(repo)?;
            let group = match key_group {
                Some(group) => Some(valid_key_group(group)?),
                None => encrypted.then(|| format!("{owner}/{name}")),
            };
            let meta = metadata(&cli).await?.meta;
            meta.create_repo(owner, name).await?;
            let keyed = match &group {
                Some(group) => {
                    async {
                        let id = existing_repo(&*meta, owner, name).await?;
                        meta.set_key_group(id, group).await
                    }
                    .await
                }
                None => Ok(()),
            };
            // The creation is audited even when making it encrypted failed.
            let detail = match (&group, &keyed) {
                (Some(group), Ok(())) => format!("encrypted, key group {group}"),
                _ => String::new(),
            };
            meta.audit(&AuditEntry::now(&actor(), "repo-create", repo, &detail))
                .await?;
            keyed.map_err(|e| {
                anyhow::anyhow!("created {owner}/{name}, but it is not encrypted: {e:#}")
            })?;
            match group {
                Some(group) => println!(
                    "created {owner}/{name} (encrypted, key group {group}; an admin runs `git dits key init` in a clone to make its first key)"
                ),
                None => println!("created {owner}/{name}"),
            }
            Ok(())
        }
        Command::Repo {
            command: RepoCommand::Member { repo, user, role },
        } => {
            let (owner, name) = split_repo(repo)?;
            let role = Role::parse(role)
                .ok_or_else(|| anyhow::anyhow!("{role:?}: roles are read, write, admin"))?;
            let meta = metadata(&cli).await?.meta;
            meta.set_member(owner, name, user, role).await?;
            let detail = format!("{repo} {}", format!("{role:?}").to_lowercase());
            meta.audit(&AuditEntry::now(&actor(), "member-set", user, &detail))
                .await?;
            Ok(())
        }
        Command::Repo {
            command: RepoCommand::RemoveMember { repo, user },
        } => {
            let (owner, name) = split_repo(repo)?;
            let change = AccountChange::RemoveMember {
                owner: owner.to_string(),
                name: name.to_string(),
                user: user.clone(),
            };
            metadata(&cli)
                .await?
                .meta
                .change_account(&change, &actor())
                .await?;
            Ok(())
        }
        Command::Repo {
            command: RepoCommand::Stats { repo, json },
        } => {
            let (owner, name) = split_repo(repo)?;
            let meta = metadata(&cli).await?.meta;
            let id = existing_repo(&*meta, owner, name).await?;
            let s = meta.repo_stats(id).await?;
            let classes: std::collections::BTreeMap<String, u64> = meta
                .tier()
                .bytes_by_class(Some(id))
                .await?
                .into_iter()
                .collect();
            let ratio = if s.stored_bytes == 0 {
                0.0
            } else {
                s.logical_bytes as f64 / s.stored_bytes as f64
            };
            if *json {
                let doc = serde_json::json!({
                    "repo": repo,
                    "versions": s.versions,
                    "logical_bytes": s.logical_bytes,
                    "objects": s.objects,
                    "stored_bytes": s.stored_bytes,
                    "dedup_ratio": ratio,
                    "bytes_per_class": classes,
                });
                println!("{}", serde_json::to_string_pretty(&doc)?);
            } else {
                println!(
                    "{repo}: {} media versions, {} bytes if each were stored whole",
                    s.versions, s.logical_bytes
                );
                let per_class: Vec<String> = classes
                    .iter()
                    .map(|(class, bytes)| format!("{bytes} in {class}"))
                    .collect();
                println!(
                    "stored: {} objects, {} bytes ({})",
                    s.objects,
                    s.stored_bytes,
                    per_class.join(", ")
                );
                println!("dedup ratio: {ratio:.2}x");
            }
            Ok(())
        }
        Command::Repo {
            command: RepoCommand::LockLog { repo },
        } => {
            let (owner, name) = split_repo(repo)?;
            let metadata = metadata(&cli).await?;
            let id = existing_repo(&*metadata.meta, owner, name).await?;
            for e in metadata.locks.events(id).await? {
                println!(
                    "{}\t{}\tlock {}\t{}\towner {}\tby {}",
                    e.at, e.action, e.lock, e.path, e.owner, e.actor
                );
            }
            Ok(())
        }
        Command::Repo {
            command: RepoCommand::Log { repo, limit, json },
        } => {
            let (owner, name) = split_repo(repo)?;
            let meta = metadata(&cli).await?.meta;
            let id = existing_repo(&*meta, owner, name).await?;
            let commits = meta.commit_log(id, 0, *limit).await?;
            if *json {
                let doc: Vec<_> = commits
                    .iter()
                    .map(|c| {
                        serde_json::json!({
                            "oid": c.oid,
                            "parents": c.parents,
                            "author": c.author,
                            "time": c.time,
                            "message": c.message,
                            "media": c.pointers.iter().map(|(path, p)| serde_json::json!({
                                "path": path,
                                "size": p.size,
                                "recipe": p.recipe.to_hex(),
                                "summary": p.media,
                            })).collect::<Vec<_>>(),
                            "projects": c.projects.iter().map(|d| match &d.listed {
                                Ok(deps) => serde_json::json!({"project": d.project, "deps": deps}),
                                Err(error) => serde_json::json!({"project": d.project, "error": error}),
                            }).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&doc)?);
                return Ok(());
            }
            for c in commits {
                let subject = c.message.lines().next().unwrap_or_default();
                println!("{} {} {}  {subject}", &c.oid[..12], c.time, c.author);
                for (path, p) in &c.pointers {
                    println!("    {path}  {} bytes  {}", p.size, p.media);
                }
                for d in &c.projects {
                    print_recorded_deps(d);
                }
            }
            Ok(())
        }
        Command::AuditLog { limit, json } => {
            let entries = metadata(&cli).await?.meta.audit_log(*limit).await?;
            if *json {
                let doc: Vec<_> = entries
                    .iter()
                    .map(|e| {
                        serde_json::json!({
                            "at": e.at,
                            "actor": e.actor,
                            "action": e.action,
                            "subject": e.subject,
                            "detail": e.detail,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&doc)?);
                return Ok(());
            }
            for e in entries {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    crate::locks::rfc3339(e.at),
                    e.actor,
                    e.action,
                    e.subject,
                    e.detail
                );
            }
            Ok(())
        }
        Command::Gc {
            serve,
            dry_run,
            repo,
            json,
        } => {
            if let Some(repo) = repo {
                split_repo(repo)?;
            }
            let options = serve_options(&cli, serve)?;
            let state = crate::server::state::HubState::open(&options).await?;
            let gc = crate::server::gc::GcOptions {
                grace: options.gc_grace,
                dry_run: *dry_run,
                repo: repo.clone(),
            };
            let report = crate::server::gc::collect(&state, &gc).await?;
            if !report.ran {
                anyhow::bail!("another collector is running on this metadata store; try again when it has finished");
            }
            if !dry_run {
                let detail = format!(
                    "{} objects, {} bytes deleted; {} packs rewritten",
                    report.objects_deleted, report.blob_bytes_deleted, report.packs_rewritten
                );
                state
                    .meta
                    .audit(&AuditEntry::now(
                        &actor(),
                        "gc",
                        repo.as_deref().unwrap_or("*"),
                        &detail,
                    ))
                    .await?;
            }
            if *json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_gc_report(&report);
            }
            Ok(())
        }
        Command::Repo {
            command: RepoCommand::Delete { repo, yes },
        } => {
            let (owner, name) = split_repo(repo)?;
            anyhow::ensure!(
                *yes,
                "deleting {repo} cannot be undone; run again with --yes to confirm"
            );
            let meta = metadata(&cli).await?.meta;
            let id = existing_repo(&*meta, owner, name).await?;
            let mirror = crate::mirror::GitMirror::new(data.join("git"));
            let keys = crate::server::gc::delete_repo(&*meta, &mirror, id).await?;
            meta.audit(&AuditEntry::now(
                &actor(),
                "repo-delete",
                repo,
                &format!("{} Git packs", keys.len()),
            ))
            .await?;
            println!(
                "deleted {repo}; `dits-hub gc` frees the objects only it held (after the grace period for its Git packs)"
            );
            Ok(())
        }
        Command::Worker {
            serve,
            lease,
            once,
            kinds,
        } => {
            let state = std::sync::Arc::new(
                crate::server::state::HubState::open(&serve_options(&cli, serve)?).await?,
            );
            let mut options = crate::worker::WorkerOptions::new(*lease, *once);
            if !kinds.is_empty() {
                options.kinds = kinds
                    .iter()
                    .map(|k| {
                        crate::meta::jobs::JobKind::parse(k).ok_or_else(|| {
                            anyhow::anyhow!("{k:?} is not a kind of job (scrub, transcode, verify)")
                        })
                    })
                    .collect::<anyhow::Result<_>>()?;
            }
            let worked = crate::worker::run(state, &options).await?;
            eprintln!("worker {}: {worked} jobs worked", options.name);
            Ok(())
        }
        Command::Jobs { state, limit, json } => {
            let meta = metadata(&cli).await?.meta;
            let jobs = meta.jobs().list_jobs(state.as_deref(), *limit).await?;
            if *json {
                let doc: Vec<_> = jobs
                    .iter()
                    .map(|j| {
                        serde_json::json!({
                            "id": j.id,
                            "kind": j.kind,
                            "subject": j.subject,
                            "state": j.state,
                            "attempts": j.attempts,
                            "worker": j.worker,
                            "error": j.error,
                            "at": j.at,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&doc)?);
                return Ok(());
            }
            for j in jobs {
                println!(
                    "{}\t{}\t{}\t{} (attempt {})\t{}\t{}{}",
                    j.id,
                    j.kind,
                    j.subject,
                    j.state,
                    j.attempts,
                    j.worker.as_deref().unwrap_or("-"),
                    crate::locks::rfc3339(j.at),
                    j.error.map(|e| format!("\t{e}")).unwrap_or_default()
                );
            }
            Ok(())
        }
        Command::Scrub { serve } => {
            let state = crate::server::state::HubState::open(&serve_options(&cli, serve)?).await?;
            let queued = crate::worker::queue_scrubs(&state).await?;
            println!("queued {queued} pack scrubs; `dits-hub worker` (or a serving hub's workers) runs them");
            Ok(())
        }
        Command::Fsck { json } => {
            let meta = metadata(&cli).await?.meta;
            let found = meta.jobs().corrupt(10_000).await?;
            let unrepaired = found.iter().filter(|c| !c.repaired).count();
            if *json {
                let doc: Vec<_> = found
                    .iter()
                    .map(|c| {
                        serde_json::json!({
                            "id": c.id.to_hex(),
                            "pack": c.pack,
                            "found": c.found,
                            "detail": c.detail,
                            "repaired": c.repaired,
                        })
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"corrupt": doc, "unrepaired": unrepaired})
                    )?
                );
            } else {
                for c in &found {
                    println!(
                        "{}\t{}\t{}\t{}\t{}",
                        c.id.to_hex(),
                        if c.repaired {
                            "stored again"
                        } else {
                            "lost until pushed again"
                        },
                        crate::locks::rfc3339(c.found),
                        c.pack,
                        c.detail
                    );
                }
                println!(
                    "{} objects found corrupt by scrubs, {unrepaired} not stored again",
                    found.len()
                );
            }
            if unrepaired > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Reaper {
            serve,
            dry_run,
            json,
        } => {
            let state = crate::server::state::HubState::open(&serve_options(&cli, serve)?).await?;
            let report = crate::server::tier::reap(&state, *dry_run).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                let verb = if *dry_run { "would move" } else { "moved" };
                println!(
                    "{verb} {} packs ({} bytes) to colder classes",
                    report.packs, report.bytes
                );
                for (class, bytes) in &report.bytes_per_class {
                    println!("{class}: {bytes} bytes");
                }
            }
            Ok(())
        }
        Command::Repo {
            command:
                RepoCommand::Cold {
                    repo,
                    after,
                    class,
                    off,
                },
        } => {
            let (owner, name) = split_repo(repo)?;
            let policy = match after {
                Some(after) if !off => Some(crate::server::tier::policy(*after, class)?),
                _ => None,
            };
            let meta = metadata(&cli).await?.meta;
            let id = existing_repo(&*meta, owner, name).await?;
            meta.tier().set_policy(id, policy.as_ref()).await?;
            let detail = match &policy {
                Some(p) => format!("after {} s to {}", p.after, p.class),
                None => "off".to_string(),
            };
            meta.audit(&AuditEntry::now(&actor(), "repo-cold", repo, &detail))
                .await?;
            Ok(())
        }
        Command::Fingerprint => {
            println!("{}", crate::tls::load_or_create(&data)?.fingerprint);
            Ok(())
        }
    }
}

fn print_gc_report(r: &crate::server::gc::GcReport) {
    let verb = if r.dry_run { "would drop" } else { "dropped" };
    println!(
        "{} repositories collected ({} encrypted kept whole): {} recipes and {} objects live",
        r.repos_collected, r.repos_kept_encrypted, r.live_recipes, r.live_objects
    );
    println!(
        "{verb} {} links and {} objects ({} stored bytes)",
        r.links_dropped, r.objects_deleted, r.object_bytes_deleted
    );
    if r.dry_run {
        println!("dry run: nothing was changed");
        return;
    }
    println!(
        "rewrote {} packs ({} bytes copied); deleted {} blobs ({} bytes)",
        r.packs_rewritten, r.bytes_copied, r.blobs_deleted, r.blob_bytes_deleted
    );
    println!(
        "object store: {} bytes before, {} after; {} requests, {:.1} s",
        r.stored_bytes_before, r.stored_bytes_after, r.storage_requests, r.seconds
    );
}

/// A project's recorded dependencies under its commit in `repo log`.
fn print_recorded_deps(d: &crate::mirror::deps::RecordedDeps) {
    match &d.listed {
        Ok(deps) => {
            let problems = d.problems();
            println!(
                "    project {}  {} references{}",
                d.project,
                deps.len(),
                match problems {
                    0 => String::new(),
                    n => format!(", {n} that break it elsewhere"),
                }
            );
            for dep in deps {
                println!(
                    "      {:<9} {:<8} {}  {}",
                    dep.status,
                    dep.role,
                    dep.resolved.as_deref().unwrap_or(&dep.raw),
                    dep.asset.as_deref().unwrap_or("-")
                );
            }
        }
        Err(error) => println!("    project {}  not read: {error}", d.project),
    }
}
