//! `git-dits`: argument parsing and dispatch. The work lives in dits-core, dits-filter
//! and the command modules. Exit codes: 0 success, 1 a check found problems (fsck),
//! 2 an error (message on stderr says what to do next).

use git_dits::commands;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "git-dits",
    version,
    about = "Version control for video and large media, inside Git"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Configure the Dits filter (global, or --local) and this repository's hooks.
    Install {
        #[arg(long)]
        local: bool,
        #[arg(long)]
        skip_hooks: bool,
        /// Also check staged project files' media before each commit (`dits.checkDeps`).
        #[arg(long)]
        check_deps: bool,
    },
    /// Remove what `install` configured; hooks you had before are restored.
    Uninstall {
        #[arg(long)]
        local: bool,
    },
    /// Track paths with Dits (edits .gitattributes); no patterns lists them.
    Track {
        patterns: Vec<String>,
        /// Also mark the paths lockable.
        #[arg(long)]
        lockable: bool,
    },
    /// Stop tracking patterns (edits .gitattributes).
    Untrack {
        #[arg(required = true)]
        patterns: Vec<String>,
    },
    /// Git's long-running filter process (configured by `install`).
    FilterProcess,
    /// Single-shot clean filter: content on stdin, pointer on stdout.
    Clean {
        #[arg(last = true)]
        path: Option<String>,
    },
    /// Single-shot smudge filter: pointer on stdin, content on stdout.
    Smudge {
        #[arg(last = true)]
        path: Option<String>,
    },
    /// Describe a pointer file for `git diff` (diff.dits.textconv).
    Textconv { file: PathBuf },
    /// Show a tracked file's structure, chunks and dedup against its previous version.
    Show {
        path: String,
        #[arg(long, default_value = "HEAD")]
        rev: String,
        #[arg(long)]
        json: bool,
    },
    /// The media a project file (Kdenlive, Shotcut/MLT, OpenTimelineIO, FCPXML, Premiere,
    /// EDL) references: role, repository path, status and asset id of each.
    Deps {
        project: String,
        /// Read the project and the tree of this revision (no media needed).
        #[arg(long)]
        rev: Option<String>,
        /// Exit 1 naming each untracked, missing, outside or ambiguous reference.
        #[arg(long)]
        check: bool,
        #[arg(long)]
        json: bool,
    },
    /// Rewrite a project's media paths to where the files are in this checkout (found
    /// through .ditsrelink / dits.relink.* rules, the project's folder or the file name);
    /// lists the changes unless --write, which keeps the old project as NAME.bak.
    Relink {
        project: String,
        #[arg(long)]
        write: bool,
        #[arg(long)]
        json: bool,
    },
    /// Check every reachable pointer's recipe and objects; exit 1 listing problems.
    Fsck {
        #[arg(long)]
        json: bool,
    },
    /// List Dits-tracked files in the index (`*` content present, `-` pointer only).
    LsFiles {
        #[arg(long)]
        json: bool,
    },
    /// Fetch and write the content of files that are still pointers (after a clone with
    /// GIT_DITS_SKIP_SMUDGE=1); PATHS limit it. Files you changed are left alone.
    PullMedia {
        paths: Vec<String>,
        /// Only the media this project file references (`git dits deps`).
        #[arg(long = "for", value_name = "PROJECT", conflicts_with = "paths")]
        for_project: Option<String>,
        /// No progress or summary.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Fetch the small H.264 proxies (or posters, or thumbnail strips) the hub made of
    /// tracked video, for editing on a laptop without the originals; written under the
    /// files' paths in `dits.proxyDir` (default .git/dits-proxies) or --into.
    Proxy {
        #[arg(required = true)]
        paths: Vec<String>,
        /// proxy, poster or strip.
        #[arg(long, default_value = "proxy")]
        kind: String,
        /// The folder to write them under.
        #[arg(long, value_name = "DIR")]
        into: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Delete local media no longer needed here (old versions the hub holds); keeps what
    /// every worktree's HEAD, the index, the stash, the last `dits.pruneRecentDays` days
    /// (default 7) and unpushed commits need.
    Prune {
        /// Print what would be freed; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Ask the hub which objects it holds and keep the ones it lacks.
        #[arg(long)]
        verify_remote: bool,
        #[arg(long)]
        json: bool,
    },
    /// Lock files on the hub so nobody else can push changes to them.
    Lock {
        #[arg(required = true)]
        paths: Vec<String>,
        /// Only pushes to this branch are held back (default: every branch).
        #[arg(long)]
        branch: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Release locks (yours; someone else's needs --force and the admin role).
    Unlock {
        paths: Vec<String>,
        /// Unlock by lock id instead of path.
        #[arg(long = "id")]
        ids: Vec<String>,
        #[arg(long)]
        force: bool,
        /// Release every lock of yours whose file has no unpushed change.
        #[arg(long, conflicts_with_all = ["paths", "ids", "force"])]
        after_push: bool,
        #[arg(long)]
        json: bool,
    },
    /// List locks on the hub.
    Locks {
        /// Only locks you hold.
        #[arg(long)]
        mine: bool,
        #[arg(long)]
        path: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show a revision's tree at MOUNTPOINT through FUSE; media is fetched only when read,
    /// writes go to an overlay. `--commit -m MSG` turns the overlay into a commit.
    Mount {
        #[arg(required_unless_present = "commit")]
        mountpoint: Option<PathBuf>,
        #[arg(long, default_value = "HEAD")]
        rev: String,
        /// Commit the changes made through the mount of REV (after unmounting).
        #[arg(long, requires = "message")]
        commit: bool,
        #[arg(short, long)]
        message: Option<String>,
        /// Show only this project file and the media it references (`git dits deps`).
        #[arg(long, value_name = "PROJECT", conflicts_with = "commit")]
        project: Option<String>,
        /// Show each video as the small proxy the hub made of it (`git dits proxy`),
        /// under its own name; the mount is read-only.
        #[arg(long, conflicts_with = "commit")]
        proxies: bool,
    },
    /// Unmount what `git dits mount` mounted.
    Unmount { mountpoint: PathBuf },
    /// An encrypted repository's keys: `init`, `grant USER`, `revoke USER`, `status`.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Bring history in from plain blobs or Git LFS, or take it back out (like
    /// `git lfs migrate`): `info`, `import`, `export`.
    Migrate {
        #[command(subcommand)]
        command: MigrateCommand,
    },
    /// Entry point for the hooks `install` writes.
    #[command(hide = true)]
    Hook {
        name: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Subcommand)]
enum MigrateCommand {
    /// What history holds, by extension: files, versions, bytes, and Git LFS objects
    /// (present locally in brackets).
    Info {
        /// Only paths matching these patterns (comma-separated, as in .gitattributes).
        #[arg(long)]
        include: Option<String>,
        /// Every branch and tag (default: the current branch, or REFS).
        #[arg(long)]
        everything: bool,
        refs: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Rewrite history so paths matching --include are Dits pointers, from plain blobs or
    /// Git LFS pointers; updates .gitattributes in every commit, keeps authors, dates,
    /// messages and merges. Resumable: run it again after an interruption.
    Import {
        #[arg(long)]
        include: String,
        #[arg(long)]
        everything: bool,
        refs: Vec<String>,
    },
    /// Rewrite history so Dits pointers at paths matching --include become plain blobs
    /// (--to plain) or Git LFS pointers (--to lfs).
    Export {
        #[arg(long)]
        include: String,
        #[arg(long, value_enum, default_value = "plain")]
        to: ExportTarget,
        #[arg(long)]
        everything: bool,
        refs: Vec<String>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ExportTarget {
    Plain,
    Lfs,
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Make your identity (once per machine) and register it with the hub; in a
    /// repository with no key yet (admins only), make its first key: media pushed from
    /// then on is encrypted.
    Init {
        #[arg(long)]
        json: bool,
    },
    /// Give USER (a hub user who ran `key init`) every key generation you hold.
    Grant {
        user: String,
        #[arg(long)]
        json: bool,
    },
    /// Take USER's keys away and rotate: a new key for everyone else, so media pushed from
    /// then on is unreadable to USER.
    Revoke {
        user: String,
        #[arg(long)]
        json: bool,
    },
    /// Your identity, whether the repository is encrypted, and who holds which key.
    Status {
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    dits_core::memory::keep_freed_memory();
    git_remote_dits::logging::init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Install {
            local,
            skip_hooks,
            check_deps,
        } => commands::install::install(local, skip_hooks)
            .and_then(|_| commands::install::enable_deps_check(local, check_deps))
            .map(|_| 0),
        Command::Uninstall { local } => commands::install::uninstall(local).map(|_| 0),
        Command::Track { patterns, lockable } => {
            commands::track::track(&patterns, lockable).map(|_| 0)
        }
        Command::Untrack { patterns } => commands::track::untrack(&patterns).map(|_| 0),
        Command::FilterProcess => commands::filter::filter_process().map(|_| 0),
        Command::Clean { path } => commands::filter::clean(path.as_deref()).map(|_| 0),
        Command::Smudge { path } => commands::filter::smudge(path.as_deref()).map(|_| 0),
        Command::Textconv { file } => commands::show::textconv(&file).map(|_| 0),
        Command::Show { path, rev, json } => commands::show::show(&path, &rev, json).map(|_| 0),
        Command::Fsck { json } => commands::fsck::fsck(json),
        Command::LsFiles { json } => commands::ls_files::ls_files(json).map(|_| 0),
        Command::Lock {
            paths,
            branch,
            json,
        } => commands::locks::lock(&paths, branch.as_deref(), json),
        Command::Unlock {
            paths,
            ids,
            force,
            after_push,
            json,
        } => {
            if after_push {
                commands::locks::unlock_after_push(json)
            } else if paths.is_empty() && ids.is_empty() {
                Err(anyhow::anyhow!(
                    "name the paths to unlock (or --id ID, or --after-push)"
                ))
            } else {
                commands::locks::unlock(&paths, &ids, force, json)
            }
        }
        Command::Mount {
            mountpoint,
            rev,
            commit,
            message,
            project,
            proxies,
        } => match (commit, mountpoint) {
            (true, _) => {
                dits_mount::commit(&rev, message.as_deref().unwrap_or_default()).map(|id| {
                    println!("{id}");
                    0
                })
            }
            (false, Some(m)) => project
                .map(|p| commands::deps::project_files(&p, &rev))
                .transpose()
                .and_then(|only| {
                    dits_mount::mount_with(&m, &rev, dits_mount::MountOptions { only, proxies })
                })
                .map(|_| 0),
            (false, None) => Err(anyhow::anyhow!("give a mount point")),
        },
        Command::Unmount { mountpoint } => dits_mount::unmount(&mountpoint).map(|_| 0),
        Command::Key { command } => match command {
            KeyCommand::Init { json } => commands::key::init(json),
            KeyCommand::Grant { user, json } => commands::key::grant(&user, json),
            KeyCommand::Revoke { user, json } => commands::key::revoke(&user, json),
            KeyCommand::Status { json } => commands::key::status(json),
        }
        .map(|_| 0),
        Command::Locks { mine, path, json } => commands::locks::list(mine, path.as_deref(), json),
        Command::Prune {
            dry_run,
            verify_remote,
            json,
        } => commands::prune::prune(dry_run, verify_remote, json),
        Command::PullMedia {
            paths,
            for_project,
            quiet,
        } => match for_project {
            Some(project) => commands::pull_media::pull_media_for(&project, quiet).map(|_| 0),
            None => commands::pull_media::pull_media(&paths, quiet).map(|_| 0),
        },
        Command::Proxy {
            paths,
            kind,
            into,
            json,
        } => commands::proxy::proxy(&paths, &kind, into.as_deref(), json),
        Command::Relink {
            project,
            write,
            json,
        } => commands::relink::relink(&project, write, json),
        Command::Deps {
            project,
            rev,
            check,
            json,
        } => commands::deps::deps(&project, rev.as_deref(), json, check),
        Command::Hook { name, args } => commands::install::hook(&name, &args),
        Command::Migrate { command } => match command {
            MigrateCommand::Info {
                include,
                everything,
                refs,
                json,
            } => commands::migrate::info(include.as_deref(), everything, &refs, json),
            MigrateCommand::Import {
                include,
                everything,
                refs,
            } => commands::migrate::import(&include, everything, &refs),
            MigrateCommand::Export {
                include,
                to,
                everything,
                refs,
            } => {
                let to = match to {
                    ExportTarget::Plain => commands::migrate::ExportTo::Plain,
                    ExportTarget::Lfs => commands::migrate::ExportTo::Lfs,
                };
                commands::migrate::export(&include, to, everything, &refs)
            }
        },
    };
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("git-dits: {e:#}");
            ExitCode::from(2)
        }
    }
}
