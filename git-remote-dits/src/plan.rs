//! Deciding what a push does before anything is sent: which refs are already where Git
//! wants them, which are refused here ("fetch first", "non-fast-forward", or all of
//! them under `--atomic`), and which compare-and-swap updates to ask the hub for; then
//! the status lines Git gets once the hub has answered. Questions about the local
//! repository go through [`LocalRepository`], so this module runs no git and talks to
//! no hub, and is tested with an in-memory history.

use std::collections::BTreeMap;

use dits_wire::wire::{RefResult, RefUpdate, ZERO_OID};

use crate::protocol::{PushSpec, RefStatus, Refusal};

/// What planning a push needs to know about the repository being pushed from. Asked
/// lazily, in the order the specs come, and only when the answer matters.
pub trait LocalRepository {
    type Error;
    /// The commit a push source (`main`, `HEAD~1`, an object id) names.
    fn resolve(&mut self, rev: &str) -> Result<String, Self::Error>;
    /// Whether this repository has object `oid`.
    fn has_object(&mut self, oid: &str) -> bool;
    /// Whether `old` is an ancestor of (or equal to) `new`.
    fn is_ancestor(&mut self, old: &str, new: &str) -> bool;
}

/// What a push will do, decided before anything is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushPlan {
    /// Refs answered without the hub: already at the pushed commit (ok) or refused
    /// here. Under `--atomic` with any refusal, every ref of the push, refused.
    pub settled: Vec<RefStatus>,
    /// What to ask the hub to move, in the order Git asked; empty if nothing should.
    pub updates: Vec<RefUpdate>,
}

/// Plans the push of `specs` against the refs the remote has now (`remote_refs`,
/// name → object id).
pub fn plan_push<L: LocalRepository>(
    specs: &[PushSpec],
    remote_refs: &BTreeMap<String, String>,
    local: &mut L,
    atomic: bool,
) -> Result<PushPlan, L::Error> {
    let mut plan = PushPlan {
        settled: Vec::new(),
        updates: Vec::new(),
    };
    for spec in specs {
        let new = match &spec.src {
            Some(src) => local.resolve(src)?,
            None => ZERO_OID.to_string(),
        };
        let old = remote_refs
            .get(&spec.dst)
            .cloned()
            .unwrap_or_else(|| ZERO_OID.to_string());
        if old == new {
            plan.settled.push(RefStatus::ok(&spec.dst));
            continue;
        }
        // Creating or deleting a ref loses nothing; moving one must keep what it had.
        if !spec.force && old != ZERO_OID && new != ZERO_OID {
            if !local.has_object(&old) {
                plan.settled
                    .push(RefStatus::refused(&spec.dst, Refusal::FetchFirst));
                continue;
            }
            if !local.is_ancestor(&old, &new) {
                plan.settled
                    .push(RefStatus::refused(&spec.dst, Refusal::NonFastForward));
                continue;
            }
        }
        plan.updates.push(RefUpdate {
            name: spec.dst.clone(),
            old,
            new,
        });
    }
    if atomic && plan.settled.iter().any(|s| s.refusal.is_some()) {
        plan.fail_all();
    }
    Ok(plan)
}

impl PushPlan {
    /// Commits the hub must end up with: the new values of the refs that aren't
    /// deleted.
    pub fn tips(&self) -> Vec<String> {
        self.updates
            .iter()
            .filter(|u| u.new != ZERO_OID)
            .map(|u| u.new.clone())
            .collect()
    }

    /// `--atomic` and something was refused: nothing moves, and every ref says why.
    fn fail_all(&mut self) {
        for status in &mut self.settled {
            status.refusal.get_or_insert(Refusal::AtomicPushFailed);
        }
        for update in self.updates.drain(..) {
            self.settled
                .push(RefStatus::refused(&update.name, Refusal::AtomicPushFailed));
        }
    }

    /// The status lines for Git: the settled refs, then the hub's answer for each
    /// update it was asked for. Each status names one of those updates, never a name the
    /// hub made up (one holding a newline would forge lines of the helper protocol); an
    /// update the hub did not answer for is reported as refused.
    pub fn statuses(self, hub_results: Vec<RefResult>) -> Vec<RefStatus> {
        let mut statuses = self.settled;
        for update in self.updates {
            let answer = hub_results.iter().find(|r| r.name == update.name);
            statuses.push(RefStatus {
                refusal: match answer {
                    Some(r) if r.ok => None,
                    Some(r) => Some(Refusal::Hub(
                        r.error.clone().unwrap_or_else(|| "refused".into()),
                    )),
                    None => Some(Refusal::Hub("the hub did not answer for this ref".into())),
                },
                name: update.name,
            });
        }
        statuses
    }
}

/// The updates that landed on the hub and left a commit behind (not deletes): whose
/// changed paths `dits.unlockAfterPush` releases locks on.
pub fn landed<'a>(updates: &'a [RefUpdate], hub_results: &[RefResult]) -> Vec<&'a RefUpdate> {
    updates
        .iter()
        .filter(|u| u.new != ZERO_OID && hub_results.iter().any(|r| r.ok && r.name == u.name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    const BASE: &str = "1111111111111111111111111111111111111111";
    const NEXT: &str = "2222222222222222222222222222222222222222";
    const OTHER: &str = "3333333333333333333333333333333333333333";
    const UNKNOWN: &str = "4444444444444444444444444444444444444444";

    /// A repository with commits BASE → NEXT and BASE → OTHER, branches named after
    /// them, and a record of which questions were asked.
    #[derive(Default)]
    struct History {
        asked_ancestry: Vec<(String, String)>,
    }

    impl LocalRepository for History {
        type Error = String;
        fn resolve(&mut self, rev: &str) -> Result<String, String> {
            match rev {
                "base" => Ok(BASE.into()),
                "next" => Ok(NEXT.into()),
                "other" => Ok(OTHER.into()),
                _ => Err(format!("unknown revision {rev}")),
            }
        }
        fn has_object(&mut self, oid: &str) -> bool {
            [BASE, NEXT, OTHER].contains(&oid)
        }
        fn is_ancestor(&mut self, old: &str, new: &str) -> bool {
            self.asked_ancestry.push((old.into(), new.into()));
            let edges: BTreeSet<(&str, &str)> = [(BASE, NEXT), (BASE, OTHER)].into();
            old == new || edges.contains(&(old, new))
        }
    }

    fn spec(line: &str) -> PushSpec {
        PushSpec::parse(line).unwrap()
    }

    fn remote(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(n, o)| (n.to_string(), o.to_string()))
            .collect()
    }

    fn plan(lines: &[&str], remote_refs: &[(&str, &str)], atomic: bool) -> PushPlan {
        let specs: Vec<PushSpec> = lines.iter().map(|l| spec(l)).collect();
        plan_push(
            &specs,
            &remote(remote_refs),
            &mut History::default(),
            atomic,
        )
        .unwrap()
    }

    fn update(name: &str, old: &str, new: &str) -> RefUpdate {
        RefUpdate {
            name: name.into(),
            old: old.into(),
            new: new.into(),
        }
    }

    fn lines(statuses: &[RefStatus]) -> Vec<String> {
        statuses.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn push_that_fast_forwards_asks_the_hub_to_move_the_ref_from_what_it_saw() {
        let p = plan(
            &["next:refs/heads/main"],
            &[("refs/heads/main", BASE)],
            false,
        );
        assert_eq!(p.settled, []);
        assert_eq!(p.updates, [update("refs/heads/main", BASE, NEXT)]);
        assert_eq!(p.tips(), [NEXT]);
    }

    #[test]
    fn push_without_force_to_a_diverged_ref_is_refused_non_fast_forward() {
        let p = plan(
            &["other:refs/heads/main"],
            &[("refs/heads/main", NEXT)],
            false,
        );
        assert_eq!(
            lines(&p.settled),
            ["error refs/heads/main non-fast-forward"]
        );
        assert_eq!(p.updates, []);
    }

    #[test]
    fn forced_push_to_a_diverged_ref_is_sent_without_asking_about_ancestry() {
        let specs = [spec("+other:refs/heads/main")];
        let mut history = History::default();
        let p = plan_push(
            &specs,
            &remote(&[("refs/heads/main", NEXT)]),
            &mut history,
            false,
        )
        .unwrap();
        assert_eq!(p.updates, [update("refs/heads/main", NEXT, OTHER)]);
        assert!(history.asked_ancestry.is_empty());
    }

    #[test]
    fn push_to_a_ref_whose_remote_commit_is_unknown_locally_is_refused_fetch_first() {
        let p = plan(
            &["next:refs/heads/main"],
            &[("refs/heads/main", UNKNOWN)],
            false,
        );
        assert_eq!(lines(&p.settled), ["error refs/heads/main fetch first"]);
        assert_eq!(p.updates, []);
    }

    #[test]
    fn forced_push_over_a_remote_commit_unknown_locally_is_sent() {
        let p = plan(
            &["+next:refs/heads/main"],
            &[("refs/heads/main", UNKNOWN)],
            false,
        );
        assert_eq!(p.updates, [update("refs/heads/main", UNKNOWN, NEXT)]);
    }

    #[test]
    fn push_of_a_new_ref_is_sent_with_the_zero_id_as_old_value() {
        let p = plan(
            &["next:refs/heads/topic"],
            &[("refs/heads/main", UNKNOWN)],
            false,
        );
        assert_eq!(p.updates, [update("refs/heads/topic", ZERO_OID, NEXT)]);
    }

    #[test]
    fn delete_push_is_sent_with_the_zero_id_as_new_value_and_has_no_tip() {
        let p = plan(&[":refs/heads/x"], &[("refs/heads/x", UNKNOWN)], false);
        assert_eq!(p.updates, [update("refs/heads/x", UNKNOWN, ZERO_OID)]);
        assert!(p.tips().is_empty());
    }

    #[test]
    fn deleting_a_ref_the_remote_does_not_have_is_ok_without_asking_the_hub() {
        let p = plan(&[":refs/heads/gone"], &[], false);
        assert_eq!(lines(&p.settled), ["ok refs/heads/gone"]);
        assert_eq!(p.updates, []);
    }

    #[test]
    fn push_of_a_ref_already_at_the_pushed_commit_is_ok_without_asking_the_hub() {
        let p = plan(
            &["next:refs/heads/main"],
            &[("refs/heads/main", NEXT)],
            false,
        );
        assert_eq!(lines(&p.settled), ["ok refs/heads/main"]);
        assert_eq!(p.updates, []);
    }

    #[test]
    fn atomic_push_with_one_refusal_fails_every_ref_and_sends_nothing() {
        let p = plan(
            &[
                "next:refs/heads/main",
                "other:refs/heads/b",
                "base:refs/heads/same",
                "next:refs/heads/new",
            ],
            &[
                ("refs/heads/main", BASE),
                ("refs/heads/b", NEXT),
                ("refs/heads/same", BASE),
            ],
            true,
        );
        assert_eq!(p.updates, []);
        assert!(p.tips().is_empty());
        assert_eq!(
            lines(&p.settled),
            [
                "error refs/heads/b non-fast-forward",
                "error refs/heads/same atomic push failed",
                "error refs/heads/main atomic push failed",
                "error refs/heads/new atomic push failed",
            ]
        );
    }

    #[test]
    fn atomic_push_with_no_refusal_is_sent_whole() {
        let p = plan(
            &["next:refs/heads/main", "other:refs/heads/b"],
            &[("refs/heads/main", BASE)],
            true,
        );
        assert_eq!(p.settled, []);
        assert_eq!(p.updates.len(), 2);
    }

    #[test]
    fn non_atomic_push_with_one_refusal_still_sends_the_others() {
        let p = plan(
            &["next:refs/heads/main", "other:refs/heads/b"],
            &[("refs/heads/main", BASE), ("refs/heads/b", NEXT)],
            false,
        );
        assert_eq!(lines(&p.settled), ["error refs/heads/b non-fast-forward"]);
        assert_eq!(p.updates, [update("refs/heads/main", BASE, NEXT)]);
    }

    #[test]
    fn an_unresolvable_push_source_is_an_error() {
        let specs = [spec("nope:refs/heads/main")];
        let e = plan_push(&specs, &BTreeMap::new(), &mut History::default(), false).unwrap_err();
        assert_eq!(e, "unknown revision nope");
    }

    #[test]
    fn hub_answers_follow_the_settled_statuses_and_keep_the_hubs_reason() {
        let p = plan(
            &[
                "base:refs/heads/same",
                "next:refs/heads/main",
                "next:refs/heads/t",
            ],
            &[("refs/heads/same", BASE), ("refs/heads/main", BASE)],
            false,
        );
        let results = vec![
            RefResult {
                name: "refs/heads/main".into(),
                ok: true,
                error: None,
            },
            RefResult {
                name: "refs/heads/t".into(),
                ok: false,
                error: Some("fetch first".into()),
            },
        ];
        assert_eq!(
            lines(&p.statuses(results)),
            [
                "ok refs/heads/same",
                "ok refs/heads/main",
                "error refs/heads/t fetch first"
            ]
        );
    }

    #[test]
    fn a_hub_refusal_without_a_reason_says_refused() {
        let p = plan(&["next:refs/heads/main"], &[], false);
        let results = vec![RefResult {
            name: "refs/heads/main".into(),
            ok: false,
            error: None,
        }];
        assert_eq!(
            lines(&p.statuses(results)),
            ["error refs/heads/main refused"]
        );
    }

    #[test]
    fn a_hub_cannot_add_status_lines_of_its_own() {
        let p = plan(&["next:refs/heads/main"], &[], false);
        let results = vec![RefResult {
            name: "refs/heads/evil\nok refs/heads/other".into(),
            ok: true,
            error: None,
        }];
        assert_eq!(
            lines(&p.statuses(results)),
            ["error refs/heads/main the hub did not answer for this ref"]
        );
    }

    #[test]
    fn landed_updates_leave_out_deletes_and_refs_the_hub_refused() {
        let updates = [
            update("refs/heads/main", BASE, NEXT),
            update("refs/heads/x", BASE, ZERO_OID),
            update("refs/heads/b", NEXT, OTHER),
        ];
        let ok = |name: &str, ok| RefResult {
            name: name.into(),
            ok,
            error: None,
        };
        let results = [
            ok("refs/heads/main", true),
            ok("refs/heads/x", true),
            ok("refs/heads/b", false),
        ];
        assert_eq!(landed(&updates, &results), [&updates[0]]);
    }
}
