//! The remote-helper command reader (`Conversation::next_request`) and `PushSpec::parse`
//! fed arbitrary bytes and mutated real conversations as Git's side of the pipe: no panic,
//! the helper answers only in the protocol's words, and every request it yields is
//! well-formed. The short form of `fuzz/`'s `helper_commands` target (issue 15).

use git_remote_dits::protocol::{Conversation, PushSpec, Request};
use proptest::prelude::*;

/// What Git sends for a clone and for an atomic push with a force and a delete.
const SESSIONS: [&str; 2] = [
    "capabilities\noption progress true\noption verbosity 1\nlist\n\
     fetch 3b18e512dba79e4c8300dd08aeb37f8e728b8dad refs/heads/main\n\n\n",
    "capabilities\noption atomic true\nlist for-push\n\
     push +refs/heads/topic:refs/heads/topic\npush :refs/heads/old\n\n\n",
];

fn check(input: &[u8]) -> Result<(), TestCaseError> {
    let mut conversation = Conversation::default();
    let mut rest = input;
    let mut out = Vec::new();
    loop {
        match conversation.next_request(&mut rest, &mut out) {
            Ok(Some(Request::Fetch(batch))) => {
                for f in batch {
                    prop_assert!(f.oid.len() == 40 || f.oid.len() == 64);
                    prop_assert!(!f.name.is_empty() && !f.name.contains('\n'));
                }
            }
            Ok(Some(Request::Push(batch))) => {
                for p in batch {
                    prop_assert!(!p.dst.is_empty() && !p.dst.contains('\n'));
                    prop_assert!(p.src.as_deref() != Some(""));
                }
            }
            Ok(Some(Request::List { .. })) => {}
            Ok(None) if rest.is_empty() => break,
            Ok(None) => {}
            Err(_) => break,
        }
    }
    let answers = String::from_utf8(out).expect("the helper answers in text");
    for line in answers.lines() {
        prop_assert!(
            matches!(
                line,
                "" | "ok" | "unsupported" | "option" | "fetch" | "push"
            ),
            "unexpected answer {line:?}"
        );
    }
    for line in String::from_utf8_lossy(input).lines() {
        if let Ok(spec) = PushSpec::parse(line) {
            prop_assert!(!spec.dst.is_empty());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_the_helper(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        check(&bytes)?;
    }

    #[test]
    fn mutated_real_conversations_never_panic_the_helper(
        which in 0usize..2,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..6),
    ) {
        let mut bytes = SESSIONS[which].as_bytes().to_vec();
        for (at, value, kind) in edits {
            let at = at % bytes.len().max(1);
            match kind {
                0 if !bytes.is_empty() => bytes[at] = value,
                1 => bytes.insert(at, value),
                _ => bytes.truncate(at),
            }
        }
        check(&bytes)?;
    }
}
