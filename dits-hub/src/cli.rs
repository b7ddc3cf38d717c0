//! The `dits-hub` command line. Settings come from flags or `DITS_HUB_*` variables.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::meta::{Meta, Role};

#[derive(Parser)]
#[command(
    name = "dits-hub",
    version,
    about = "The Dits hub: refs, media chunks and locks for Dits repositories"
)]
struct Cli {
    /// Data directory: metadata (SQLite), objects, TLS certificate.
    #[arg(
        long,
        env = "DITS_HUB_DATA",
        default_value = "dits-hub-data",
        global = true
    )]
    data: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve QUIC (UDP) and HTTPS (TCP) on one address.
    Serve {
        /// Address to listen on; port 0 picks a free one (printed at start).
        #[arg(long, env = "DITS_HUB_LISTEN", default_value = "127.0.0.1:7443")]
        listen: std::net::SocketAddr,
        /// Keep chunk and Git packs in S3-compatible storage (s3://BUCKET[/PREFIX]); the
        /// endpoint, region and credentials come from the usual AWS_* variables.
        #[arg(long, env = "DITS_HUB_OBJECTS")]
        objects: Option<String>,
        /// Keep locks in Redis (redis://HOST:PORT[/DB]), written through to the hub's
        /// database so a Redis restart loses none.
        #[arg(long, env = "DITS_HUB_LOCKS")]
        locks: Option<String>,
        /// Certificate chain (PEM) from a CA; clients then need no fingerprint pin.
        #[arg(long, env = "DITS_HUB_TLS_CERT", requires = "tls_key")]
        tls_cert: Option<std::path::PathBuf>,
        /// Private key (PEM) for --tls-cert.
        #[arg(long, env = "DITS_HUB_TLS_KEY", requires = "tls_cert")]
        tls_key: Option<std::path::PathBuf>,
    },
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
    /// Print the certificate fingerprint clients pin (creates the certificate if needed).
    Fingerprint,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user and print their token (shown once).
    Add { name: String },
}

#[derive(Subcommand)]
enum RepoCommand {
    /// Create OWNER/NAME; a user called OWNER becomes its admin.
    Create { repo: String },
    /// Give USER a role (read, write or admin) in OWNER/NAME.
    Member {
        repo: String,
        user: String,
        #[arg(long, default_value = "write")]
        role: String,
    },
    /// Print OWNER/NAME's lock history: who locked, unlocked and force-unlocked what.
    LockLog { repo: String },
}

fn split_repo(repo: &str) -> anyhow::Result<(&str, &str)> {
    match repo.split_once('/') {
        Some((o, n)) if dits_remote::url::valid_name(o) && dits_remote::url::valid_name(n) => {
            Ok((o, n))
        }
        _ => anyhow::bail!("{repo:?}: expected OWNER/NAME (letters, digits, '-', '_', '.')"),
    }
}

fn meta(data: &std::path::Path) -> anyhow::Result<Meta> {
    std::fs::create_dir_all(data)?;
    Meta::open(&data.join("hub.sqlite"))
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
    match cli.command {
        Command::Serve {
            listen,
            objects,
            locks,
            tls_cert,
            tls_key,
        } => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(crate::server::serve(crate::server::ServeOptions {
                data: cli.data,
                listen,
                objects,
                locks,
                tls_cert,
                tls_key,
            }))
        }
        Command::User {
            command: UserCommand::Add { name },
        } => {
            if !dits_remote::url::valid_name(&name) {
                anyhow::bail!("{name:?}: user names are letters, digits, '-', '_', '.'");
            }
            let token = meta(&cli.data)?.add_user(&name)?;
            println!("{token}");
            Ok(())
        }
        Command::Repo {
            command: RepoCommand::Create { repo },
        } => {
            let (owner, name) = split_repo(&repo)?;
            meta(&cli.data)?.create_repo(owner, name)?;
            println!("created {owner}/{name}");
            Ok(())
        }
        Command::Repo {
            command: RepoCommand::Member { repo, user, role },
        } => {
            let (owner, name) = split_repo(&repo)?;
            let role = Role::parse(&role)
                .ok_or_else(|| anyhow::anyhow!("{role:?}: roles are read, write, admin"))?;
            meta(&cli.data)?.set_member(owner, name, &user, role)?;
            Ok(())
        }
        Command::Repo {
            command: RepoCommand::LockLog { repo },
        } => {
            let (owner, name) = split_repo(&repo)?;
            let id = meta(&cli.data)?
                .find_repo(owner, name)?
                .ok_or_else(|| anyhow::anyhow!("repository {repo} does not exist"))?;
            let locks = crate::locks::SqliteLocks::open(&cli.data.join("hub.sqlite"))?;
            for e in locks.events(id)? {
                println!(
                    "{}\t{}\tlock {}\t{}\towner {}\tby {}",
                    e.at, e.action, e.lock, e.path, e.owner, e.actor
                );
            }
            Ok(())
        }
        Command::Fingerprint => {
            println!("{}", crate::tls::load_or_create(&cli.data)?.fingerprint);
            Ok(())
        }
    }
}
