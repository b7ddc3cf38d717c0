//! Git's remote-helper protocol (gitremote-helpers(7)) as `git-remote-dits` speaks it:
//! reading Git's commands (`capabilities`, `option`, `list`, batches of `fetch` and
//! `push`) and writing the answers Git expects. `capabilities` and `option` are
//! answered here; what needs the hub comes out as a [`Request`]. Nothing here talks to
//! a hub or runs git: it works over any `BufRead`/`Write`, so it is tested over byte
//! buffers. Every answer is flushed, because Git waits for it before saying more.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, BufRead, Write};

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("remote-helper protocol: {0}")]
    Io(#[from] io::Error),
    #[error("git-remote-dits: unknown command {0:?} from git")]
    UnknownCommand(String),
    #[error(
        "git-remote-dits: push refspec without ':' in {0:?} from git (expected `push [+]SRC:DST`)"
    )]
    RefspecWithoutColon(String),
    #[error("git-remote-dits: push refspec without a destination in {0:?} from git (expected `push [+]SRC:DST`)")]
    RefspecWithoutDestination(String),
    #[error("git-remote-dits: malformed fetch line {0:?} from git (expected `fetch SHA REF`)")]
    MalformedFetch(String),
    #[error("git-remote-dits: {got:?} inside a {batch} batch from git (expected another `{batch}` line or a blank line)")]
    UnexpectedInBatch { batch: &'static str, got: String },
}

/// What we tell Git we can do, ending with the blank line that closes the list.
const CAPABILITIES: &str = "option\nfetch\npush\n\n";

/// The options Git may set with `option NAME VALUE` that change what we do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelperOptions {
    /// Show transfer progress on stderr.
    pub progress: bool,
    /// 0 is `--quiet`; 1 is the default; more is `-v`.
    pub verbosity: u32,
    /// All refs of a push move, or none do (`git push --atomic`).
    pub atomic: bool,
}

impl Default for HelperOptions {
    fn default() -> Self {
        HelperOptions {
            progress: false,
            verbosity: 1,
            atomic: false,
        }
    }
}

/// The answer to one `option` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionAnswer {
    Ok,
    Unsupported,
}

impl HelperOptions {
    /// Applies `option NAME VALUE`; options we don't know are left to Git's default.
    pub fn set(&mut self, name: &str, value: &str) -> OptionAnswer {
        match name {
            "progress" => self.progress = value == "true",
            "verbosity" => self.verbosity = value.parse().unwrap_or(1),
            "atomic" => self.atomic = value == "true",
            _ => return OptionAnswer::Unsupported,
        }
        OptionAnswer::Ok
    }
}

/// One line of a `fetch` batch: Git wants `oid`, which the remote listed as `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    pub oid: String,
    pub name: String,
}

/// One line of a `push` batch: `[+]SRC:DST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushSpec {
    /// `+`: move `dst` even if that is not a fast-forward.
    pub force: bool,
    /// The local revision to push; `None` deletes `dst` (`:DST`).
    pub src: Option<String>,
    /// The remote ref to move.
    pub dst: String,
}

impl PushSpec {
    /// Parses what follows `push ` on a push line.
    pub fn parse(spec: &str) -> Result<PushSpec, ProtocolError> {
        let (force, rest) = match spec.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, spec),
        };
        let (src, dst) = rest
            .split_once(':')
            .ok_or_else(|| ProtocolError::RefspecWithoutColon(spec.to_string()))?;
        if dst.is_empty() {
            return Err(ProtocolError::RefspecWithoutDestination(spec.to_string()));
        }
        Ok(PushSpec {
            force,
            src: (!src.is_empty()).then(|| src.to_string()),
            dst: dst.to_string(),
        })
    }
}

/// A command that needs the remote; the caller answers it with [`write_list`],
/// [`write_fetch_done`] or [`write_push_statuses`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `list` or `list for-push`: the remote's refs.
    List { for_push: bool },
    /// A whole `fetch` batch.
    Fetch(Vec<FetchRequest>),
    /// A whole `push` batch.
    Push(Vec<PushSpec>),
}

/// The helper's side of one conversation with Git: the options Git has set so far.
#[derive(Debug, Default)]
pub struct Conversation {
    options: HelperOptions,
}

impl Conversation {
    pub fn options(&self) -> &HelperOptions {
        &self.options
    }

    /// Reads Git's commands, answering `capabilities` and `option` on `out`, until one
    /// needs the remote. `None` when Git ends the conversation (a blank line or end of
    /// input).
    pub fn next_request<R: BufRead, W: Write>(
        &mut self,
        input: &mut R,
        out: &mut W,
    ) -> Result<Option<Request>, ProtocolError> {
        while let Some(line) = read_line(input)? {
            let (command, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
            match command {
                "" => return Ok(None),
                "capabilities" => answer(out, CAPABILITIES)?,
                "option" => {
                    let (name, value) = rest.split_once(' ').unwrap_or((rest, ""));
                    let reply = match self.options.set(name, value) {
                        OptionAnswer::Ok => "ok\n",
                        OptionAnswer::Unsupported => "unsupported\n",
                    };
                    answer(out, reply)?;
                }
                "list" => {
                    return Ok(Some(Request::List {
                        for_push: rest == "for-push",
                    }))
                }
                "fetch" => {
                    let batch = read_batch(input, &line, "fetch", parse_fetch)?;
                    return Ok(Some(Request::Fetch(batch)));
                }
                "push" => {
                    let batch = read_batch(input, &line, "push", PushSpec::parse)?;
                    return Ok(Some(Request::Push(batch)));
                }
                other => return Err(ProtocolError::UnknownCommand(other.to_string())),
            }
        }
        Ok(None)
    }
}

/// One line without its line ending; `None` at end of input.
fn read_line<R: BufRead>(input: &mut R) -> io::Result<Option<String>> {
    let mut line = String::new();
    if input.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    if line.ends_with('\n') {
        line.pop();
        if line.ends_with('\r') {
            line.pop();
        }
    }
    Ok(Some(line))
}

/// The batch that starts with `first` (`WORD ...`) and runs to a blank line (or the end
/// of input): every line must start with `WORD `.
fn read_batch<R: BufRead, T>(
    input: &mut R,
    first: &str,
    word: &'static str,
    parse: fn(&str) -> Result<T, ProtocolError>,
) -> Result<Vec<T>, ProtocolError> {
    let mut batch = Vec::new();
    let mut line = Some(first.to_string());
    while let Some(current) = line.filter(|l| !l.is_empty()) {
        let item = current
            .strip_prefix(word)
            .and_then(|rest| rest.strip_prefix(' '))
            .ok_or_else(|| ProtocolError::UnexpectedInBatch {
                batch: word,
                got: current.clone(),
            })?;
        batch.push(parse(item)?);
        line = read_line(input)?;
    }
    Ok(batch)
}

fn parse_fetch(rest: &str) -> Result<FetchRequest, ProtocolError> {
    let malformed = || ProtocolError::MalformedFetch(format!("fetch {rest}"));
    let (oid, name) = rest.split_once(' ').ok_or_else(malformed)?;
    let is_oid = matches!(oid.len(), 40 | 64) && oid.bytes().all(|b| b.is_ascii_hexdigit());
    if !is_oid || name.is_empty() {
        return Err(malformed());
    }
    Ok(FetchRequest {
        oid: oid.to_string(),
        name: name.to_string(),
    })
}

fn answer<W: Write>(out: &mut W, text: &str) -> io::Result<()> {
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Answers `list`: each ref as `OID NAME`, then `@BRANCH HEAD` naming the remote's
/// default branch (what a clone checks out), then a blank line.
pub fn write_list<W: Write>(out: &mut W, refs: &BTreeMap<String, String>) -> io::Result<()> {
    let mut text = String::new();
    for (name, oid) in refs {
        text.push_str(&format!("{oid} {name}\n"));
    }
    if let Some(head) = default_branch(refs) {
        text.push_str(&format!("@{head} HEAD\n"));
    }
    text.push('\n');
    answer(out, &text)
}

/// The branch a clone checks out: `main`, else `master`, else the first branch.
pub fn default_branch(refs: &BTreeMap<String, String>) -> Option<&str> {
    ["refs/heads/main", "refs/heads/master"]
        .into_iter()
        .find(|r| refs.contains_key(*r))
        .or_else(|| {
            refs.keys()
                .map(String::as_str)
                .find(|r| r.starts_with("refs/heads/"))
        })
}

/// Answers a `fetch` batch: a blank line once the objects are in the repository.
pub fn write_fetch_done<W: Write>(out: &mut W) -> io::Result<()> {
    answer(out, "\n")
}

/// Why a ref of a push did not move. The first two are the words Git recognises to
/// print its "fetch first" / "non-fast-forward" hints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The remote ref points at a commit this repository doesn't have.
    FetchFirst,
    /// The push would lose commits on the remote ref and was not forced.
    NonFastForward,
    /// `--atomic`, and another ref of the same push was refused.
    AtomicPushFailed,
    /// The hub refused, in its own words.
    Hub(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::FetchFirst => f.write_str("fetch first"),
            Refusal::NonFastForward => f.write_str("non-fast-forward"),
            Refusal::AtomicPushFailed => f.write_str("atomic push failed"),
            // A line break would end the status line early and derail Git's reading.
            Refusal::Hub(reason) => f.write_str(&reason.replace(['\n', '\r'], " ")),
        }
    }
}

/// The outcome for one ref of a push: `ok REF` or `error REF REASON`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefStatus {
    pub name: String,
    pub refusal: Option<Refusal>,
}

impl RefStatus {
    pub fn ok(name: &str) -> RefStatus {
        RefStatus {
            name: name.to_string(),
            refusal: None,
        }
    }

    pub fn refused(name: &str, refusal: Refusal) -> RefStatus {
        RefStatus {
            name: name.to_string(),
            refusal: Some(refusal),
        }
    }
}

impl fmt::Display for RefStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.refusal {
            None => write!(f, "ok {}", self.name),
            Some(refusal) => write!(f, "error {} {refusal}", self.name),
        }
    }
}

/// Answers a `push` batch: one status line per ref, then a blank line.
pub fn write_push_statuses<W: Write>(out: &mut W, statuses: &[RefStatus]) -> io::Result<()> {
    let mut text = String::new();
    for status in statuses {
        text.push_str(&format!("{status}\n"));
    }
    text.push('\n');
    answer(out, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a conversation over `input` and returns the requests it yielded and
    /// everything written to Git.
    fn converse(input: &[u8]) -> (Vec<Request>, String, HelperOptions) {
        let mut conversation = Conversation::default();
        let mut reader = input;
        let mut out = Vec::new();
        let mut requests = Vec::new();
        while let Some(r) = conversation.next_request(&mut reader, &mut out).unwrap() {
            requests.push(r);
        }
        let written = String::from_utf8(out).unwrap();
        (requests, written, conversation.options().clone())
    }

    fn first_error(input: &[u8]) -> ProtocolError {
        let mut conversation = Conversation::default();
        let mut reader = input;
        loop {
            match conversation.next_request(&mut reader, &mut Vec::new()) {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("no error in {:?}", String::from_utf8_lossy(input)),
                Err(e) => return e,
            }
        }
    }

    fn refs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(name, oid)| (name.to_string(), oid.to_string()))
            .collect()
    }

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";

    #[test]
    fn capabilities_are_answered_with_option_fetch_push_and_a_blank_line() {
        let (requests, written, _) = converse(b"capabilities\n");
        assert!(requests.is_empty());
        assert_eq!(written, "option\nfetch\npush\n\n");
    }

    #[test]
    fn progress_verbosity_and_atomic_options_are_answered_ok_and_remembered() {
        let (_, written, options) =
            converse(b"option progress true\noption verbosity 0\noption atomic true\n");
        assert_eq!(written, "ok\nok\nok\n");
        assert_eq!(
            options,
            HelperOptions {
                progress: true,
                verbosity: 0,
                atomic: true
            }
        );
    }

    #[test]
    fn an_unparsable_verbosity_falls_back_to_the_default() {
        let (_, written, options) = converse(b"option verbosity loud\n");
        assert_eq!(written, "ok\n");
        assert_eq!(options.verbosity, 1);
    }

    #[test]
    fn an_unknown_option_is_answered_unsupported_and_changes_nothing() {
        let (_, written, options) = converse(b"option dry-run true\noption followtags true\n");
        assert_eq!(written, "unsupported\nunsupported\n");
        assert_eq!(options, HelperOptions::default());
    }

    #[test]
    fn list_and_list_for_push_are_requests_for_the_remote() {
        let (requests, written, _) = converse(b"list\nlist for-push\n");
        assert_eq!(
            requests,
            [
                Request::List { for_push: false },
                Request::List { for_push: true }
            ]
        );
        assert_eq!(written, "", "list is answered by the caller");
    }

    #[test]
    fn list_prints_each_ref_then_head_pointing_at_main_then_a_blank_line() {
        let mut out = Vec::new();
        let listed = refs(&[
            ("refs/heads/main", A),
            ("refs/heads/topic", B),
            ("refs/tags/v1", B),
        ]);
        write_list(&mut out, &listed).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!(
                "{A} refs/heads/main\n{B} refs/heads/topic\n{B} refs/tags/v1\n@refs/heads/main HEAD\n\n"
            )
        );
    }

    #[test]
    fn list_head_falls_back_to_master_then_to_the_first_branch() {
        let with_master = refs(&[("refs/heads/a", A), ("refs/heads/master", B)]);
        assert_eq!(default_branch(&with_master), Some("refs/heads/master"));
        let branches_only = refs(&[
            ("refs/tags/v1", A),
            ("refs/heads/b", B),
            ("refs/heads/c", A),
        ]);
        assert_eq!(default_branch(&branches_only), Some("refs/heads/b"));
        let tags_only = refs(&[("refs/tags/v1", A)]);
        assert_eq!(default_branch(&tags_only), None);
    }

    #[test]
    fn list_of_an_empty_remote_is_just_the_blank_line() {
        let mut out = Vec::new();
        write_list(&mut out, &BTreeMap::new()).unwrap();
        assert_eq!(out, b"\n");
    }

    #[test]
    fn a_push_batch_is_read_to_its_blank_line_with_force_and_delete() {
        let (requests, _, _) = converse(
            b"push refs/heads/main:refs/heads/main\npush +HEAD:refs/heads/rewritten\npush :refs/heads/x\n\n",
        );
        assert_eq!(
            requests,
            [Request::Push(vec![
                PushSpec {
                    force: false,
                    src: Some("refs/heads/main".into()),
                    dst: "refs/heads/main".into()
                },
                PushSpec {
                    force: true,
                    src: Some("HEAD".into()),
                    dst: "refs/heads/rewritten".into()
                },
                PushSpec {
                    force: false,
                    src: None,
                    dst: "refs/heads/x".into()
                },
            ])]
        );
    }

    #[test]
    fn commands_after_a_batch_are_read_in_order_until_the_final_blank_line() {
        let (requests, written, _) = converse(
            format!("capabilities\nlist for-push\npush main:refs/heads/main\n\nfetch {A} refs/heads/main\n\n\nlist\n")
                .as_bytes(),
        );
        assert_eq!(
            requests,
            [
                Request::List { for_push: true },
                Request::Push(vec![PushSpec {
                    force: false,
                    src: Some("main".into()),
                    dst: "refs/heads/main".into()
                }]),
                Request::Fetch(vec![FetchRequest {
                    oid: A.into(),
                    name: "refs/heads/main".into()
                }]),
            ],
            "the blank line after the fetch batch ends the conversation"
        );
        assert_eq!(written, "option\nfetch\npush\n\n");
    }

    #[test]
    fn a_batch_cut_off_by_the_end_of_input_still_counts() {
        let (requests, _, _) = converse(b"push main:refs/heads/main");
        assert_eq!(requests.len(), 1);
    }

    #[test]
    fn a_push_line_without_a_colon_is_a_clear_error() {
        let e = first_error(b"push refs/heads/main\n\n");
        assert!(matches!(e, ProtocolError::RefspecWithoutColon(ref s) if s == "refs/heads/main"));
        assert!(e.to_string().contains("push [+]SRC:DST"), "{e}");
    }

    #[test]
    fn a_push_line_without_a_destination_is_a_clear_error() {
        let e = first_error(b"push main:\n\n");
        assert!(
            matches!(e, ProtocolError::RefspecWithoutDestination(_)),
            "{e}"
        );
    }

    #[test]
    fn another_command_inside_a_push_batch_is_a_clear_error() {
        let e = first_error(b"push main:refs/heads/main\nlist\n\n");
        assert!(
            matches!(e, ProtocolError::UnexpectedInBatch { batch: "push", ref got } if got == "list"),
            "{e}"
        );
    }

    #[test]
    fn a_fetch_batch_is_read_to_its_blank_line() {
        let (requests, _, _) =
            converse(format!("fetch {A} refs/heads/main\nfetch {B} refs/tags/v1\n\n").as_bytes());
        assert_eq!(
            requests,
            [Request::Fetch(vec![
                FetchRequest {
                    oid: A.into(),
                    name: "refs/heads/main".into()
                },
                FetchRequest {
                    oid: B.into(),
                    name: "refs/tags/v1".into()
                },
            ])]
        );
    }

    #[test]
    fn a_fetch_line_without_an_object_id_and_ref_is_a_clear_error() {
        for bad in [
            "fetch refs/heads/main\n\n",
            "fetch nothex refs/heads/main\n\n",
        ] {
            let e = first_error(bad.as_bytes());
            assert!(
                matches!(e, ProtocolError::MalformedFetch(_)),
                "{bad:?}: {e}"
            );
            assert!(e.to_string().contains("fetch SHA REF"), "{e}");
        }
    }

    #[test]
    fn an_unknown_command_is_a_clear_error() {
        let e = first_error(b"connect git-upload-pack\n");
        assert!(
            matches!(e, ProtocolError::UnknownCommand(ref c) if c == "connect"),
            "{e}"
        );
    }

    #[test]
    fn a_blank_line_or_the_end_of_input_ends_the_conversation() {
        assert_eq!(converse(b"\nlist\n").0, []);
        assert_eq!(converse(b"").0, []);
    }

    #[test]
    fn crlf_line_endings_are_read_like_lf() {
        let (requests, written, _) = converse(b"capabilities\r\npush +a:refs/heads/a\r\n\r\n");
        assert_eq!(written, "option\nfetch\npush\n\n");
        assert_eq!(requests.len(), 1);
    }

    #[test]
    fn push_statuses_are_one_line_per_ref_then_a_blank_line() {
        let mut out = Vec::new();
        let statuses = [
            RefStatus::ok("refs/heads/main"),
            RefStatus::refused("refs/heads/a", Refusal::NonFastForward),
            RefStatus::refused("refs/heads/b", Refusal::FetchFirst),
            RefStatus::refused("refs/heads/c", Refusal::AtomicPushFailed),
            RefStatus::refused("refs/heads/d", Refusal::Hub("locked by bob".into())),
        ];
        write_push_statuses(&mut out, &statuses).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ok refs/heads/main\n\
             error refs/heads/a non-fast-forward\n\
             error refs/heads/b fetch first\n\
             error refs/heads/c atomic push failed\n\
             error refs/heads/d locked by bob\n\n"
        );
    }

    #[test]
    fn a_hub_reason_with_a_line_break_stays_on_one_status_line() {
        let mut out = Vec::new();
        let status = RefStatus::refused("refs/heads/a", Refusal::Hub("two\nlines".into()));
        write_push_statuses(&mut out, &[status]).unwrap();
        assert_eq!(out, b"error refs/heads/a two lines\n\n");
    }
}
