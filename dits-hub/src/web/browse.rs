//! Browsing a repository: its branches and history (in pages, each commit with the media
//! it added or changed and how much of each its previous version already held), the tree
//! at any commit, and a project file's dependencies.

use std::sync::Arc;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use dits_core::project::deps::DepsError;
use dits_core::project::Format;
use minijinja::{context, Value};

use super::{failure, href, human_bytes, member, render};
use crate::error::HubError;
use crate::meta::Role;
use crate::mirror::tree::{EntryKind, Found};
use crate::server::http::commit_of;
use crate::server::state::HubState;

/// Commits on one page of history.
pub const HISTORY_PAGE: u32 = 50;
/// The deepest page offered: 500,000 commits back (the index's OFFSET scan stays short).
const HISTORY_PAGES: u32 = 10_000;

#[derive(serde::Deserialize)]
pub(super) struct HistoryQuery {
    page: Option<u32>,
}

/// What a version's change cost, for people: new, or the share its previous version
/// already held and the bytes that were new.
pub fn change_of(size: u64, replaced: bool, shared: Option<u64>) -> String {
    match (replaced, shared) {
        (false, _) => "new file".to_string(),
        (true, None) => "changed".to_string(),
        (true, Some(shared)) => {
            let shared = shared.min(size);
            let percent = (shared * 100).checked_div(size).unwrap_or(100);
            format!(
                "{percent}% shared with the previous version, {} new",
                human_bytes(size - shared)
            )
        }
    }
}

pub(super) async fn history(
    State(state): State<Arc<HubState>>,
    UrlPath((owner, name)): UrlPath<(String, String)>,
    Query(query): Query<HistoryQuery>,
    headers: HeaderMap,
) -> Response {
    let (session, caller) = match member(&state, &headers, &owner, &name, Role::Read).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let page = query.page.unwrap_or(1).clamp(1, HISTORY_PAGES);
    let skip = (page - 1) * HISTORY_PAGE;
    let (refs, log) = match tokio::try_join!(
        state.meta.refs(caller.repo),
        state.meta.commit_log(caller.repo, skip, HISTORY_PAGE + 1)
    ) {
        Ok(found) => found,
        Err(e) => return failure(Some(&session), &HubError::from(e)),
    };
    let older = (log.len() as u32 > HISTORY_PAGE && page < HISTORY_PAGES).then_some(page + 1);
    let newer = (page > 1).then_some(page - 1);
    let branches: Vec<Value> = refs
        .into_iter()
        .map(|(name, oid)| context! { name, oid })
        .collect();
    let commits: Vec<Value> = log
        .iter()
        .take(HISTORY_PAGE as usize)
        .map(|c| {
            let media: Vec<Value> = c
                .pointers
                .iter()
                .map(|(path, p)| {
                    context! {
                        path, size => human_bytes(p.size), recipe => p.recipe.to_hex(),
                        change => change_of(p.size, c.previous.contains_key(path), c.shared.get(path).copied()),
                    }
                })
                .collect();
            let projects: Vec<Value> = c
                .projects
                .iter()
                .map(|d| context! { path => d.project.clone(), href => href(&d.project) })
                .collect();
            context! {
                oid => c.oid,
                subject => c.message.lines().next().unwrap_or_default(),
                author => c.author,
                time => crate::locks::rfc3339(c.time),
                media, projects,
            }
        })
        .collect();
    render(
        StatusCode::OK,
        "repo.html",
        context! {
            user => session.user.name, csrf => session.csrf,
            repo => caller.repo_name, branches, commits, page, older, newer,
        },
    )
}

/// A path from a URL as a repository path: no empty, `.` or `..` components and no
/// control characters (Git's own rules for tree entries), `""` for the root.
fn repo_path(raw: &str) -> Option<String> {
    let path = raw.trim_matches('/');
    if path.is_empty() {
        return Some(String::new());
    }
    let fine = path
        .split('/')
        .all(|c| !c.is_empty() && c != "." && c != ".." && !c.chars().any(char::is_control));
    fine.then(|| path.to_string())
}

pub(super) async fn tree_root(
    State(state): State<Arc<HubState>>,
    UrlPath((owner, name, rev)): UrlPath<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    tree_at(&state, &headers, &owner, &name, &rev, "").await
}

pub(super) async fn tree_path(
    State(state): State<Arc<HubState>>,
    UrlPath((owner, name, rev, path)): UrlPath<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    tree_at(&state, &headers, &owner, &name, &rev, &path).await
}

/// The directory at `path` in commit `rev`: its entries, each media file leading to its
/// asset page and each project file to its dependencies. A media file's own path leads
/// to its asset page.
async fn tree_at(
    state: &Arc<HubState>,
    headers: &HeaderMap,
    owner: &str,
    name: &str,
    rev: &str,
    path: &str,
) -> Response {
    let (session, caller) = match member(state, headers, owner, name, Role::Read).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let not_here = || HubError::NotFound(format!("{} has no {path} at {rev}", caller.repo_name));
    let Some(path) = repo_path(path) else {
        return failure(Some(&session), &not_here());
    };
    let commit = match commit_of(state, &caller, rev).await {
        Ok(commit) => commit,
        Err(e) => return failure(Some(&session), &e),
    };
    let found = match state.mirror.lookup(caller.repo, &commit, &path).await {
        Ok(Some(found)) => found,
        Ok(None) => return failure(Some(&session), &not_here()),
        Err(e) => return failure(Some(&session), &HubError::from(e)),
    };
    let repo = &caller.repo_name;
    let entries = match found {
        Found::File(file) => {
            if let Some(p) = file.pointer {
                return Redirect::to(&format!("/ui/r/{repo}/asset/{}", p.recipe.to_hex()))
                    .into_response();
            }
            if Format::of_path(&path).is_some() {
                return Redirect::to(&format!("/ui/r/{repo}/project/{commit}/{}", href(&path)))
                    .into_response();
            }
            vec![file]
        }
        Found::Directory(entries) => entries,
    };
    let at = |name: &str| {
        if path.is_empty() {
            name.to_string()
        } else {
            format!("{path}/{name}")
        }
    };
    let listed: Vec<Value> = entries
        .iter()
        .map(|e| {
            let full = at(&e.name);
            let is_project = Format::of_path(&full).is_some()
                || (e.kind == EntryKind::Directory
                    && full.to_ascii_lowercase().ends_with(".fcpxmld"));
            let link = match (&e.kind, &e.pointer) {
                (_, _) if is_project => {
                    Some(format!("/ui/r/{repo}/project/{commit}/{}", href(&full)))
                }
                (EntryKind::Directory, _) => {
                    Some(format!("/ui/r/{repo}/tree/{commit}/{}", href(&full)))
                }
                (EntryKind::File, Some(p)) => {
                    Some(format!("/ui/r/{repo}/asset/{}", p.recipe.to_hex()))
                }
                _ => None,
            };
            let what = match (&e.kind, &e.pointer) {
                (EntryKind::Directory, _) => "directory".to_string(),
                (EntryKind::File, Some(p)) => {
                    format!(
                        "{} · {}",
                        human_bytes(p.size),
                        super::asset::media_words(&p.media)
                    )
                }
                (EntryKind::File, None) => format!("{} in Git", human_bytes(e.size)),
                (EntryKind::Other, _) => "link or submodule".to_string(),
            };
            context! { name => e.name.clone(), link, what, project => is_project }
        })
        .collect();
    // Each directory above, for the path's links.
    let mut crumbs = Vec::new();
    let mut so_far = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        if !so_far.is_empty() {
            so_far.push('/');
        }
        so_far.push_str(part);
        crumbs.push(context! { name => part, href => href(&so_far) });
    }
    render(
        StatusCode::OK,
        "tree.html",
        context! {
            user => session.user.name.clone(), csrf => session.csrf.clone(),
            repo, rev, commit, path, crumbs, entries => listed,
        },
    )
}

/// The media a project file references at a commit, resolved in the mirror as
/// `git dits deps` resolves it.
pub(super) async fn project(
    State(state): State<Arc<HubState>>,
    UrlPath((owner, name, rev, path)): UrlPath<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let (session, caller) = match member(&state, &headers, &owner, &name, Role::Read).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let Some(path) = repo_path(&path).filter(|p| !p.is_empty()) else {
        return failure(
            Some(&session),
            &HubError::NotFound("no such project".into()),
        );
    };
    let commit = match commit_of(&state, &caller, &rev).await {
        Ok(commit) => commit,
        Err(e) => return failure(Some(&session), &e),
    };
    let deps = match state.mirror.project_deps(caller.repo, &commit, &path).await {
        Ok(Ok(deps)) => deps,
        Ok(Err(DepsError::Absent(doc))) => {
            return failure(
                Some(&session),
                &HubError::NotFound(format!("{doc} is not in {rev}")),
            )
        }
        Ok(Err(e)) => return failure(Some(&session), &HubError::BadRequest(e.to_string())),
        Err(e) => return failure(Some(&session), &HubError::from(e)),
    };
    let repo = &caller.repo_name;
    let problems = deps.iter().filter(|d| d.status.is_problem()).count();
    let rows: Vec<Value> = deps
        .iter()
        .map(|d| {
            let resolved = d.resolved.clone();
            // A single tracked file opens where it is (its asset page, for media).
            let link = match (d.files.as_slice(), d.status.is_problem()) {
                ([file], false) => Some(format!("/ui/r/{repo}/tree/{commit}/{}", href(file))),
                _ => None,
            };
            context! {
                raw => d.reference.raw.clone(), role => d.reference.role.as_str(),
                status => d.status.as_str(), problem => d.status.is_problem(),
                resolved, link, files => d.files.len(),
                candidates => d.candidates.join(", "),
            }
        })
        .collect();
    render(
        StatusCode::OK,
        "project.html",
        context! {
            user => session.user.name.clone(), csrf => session.csrf.clone(),
            repo, rev, commit, path, count => rows.len(), deps => rows, problems,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_from_urls_stay_inside_the_tree() {
        assert_eq!(repo_path("").as_deref(), Some(""));
        assert_eq!(repo_path("/a/b c/").as_deref(), Some("a/b c"));
        assert_eq!(repo_path("a/../b"), None);
        assert_eq!(repo_path("a//b"), None);
        assert_eq!(repo_path("./a"), None);
        assert_eq!(repo_path("a\nb"), None);
    }

    #[test]
    fn changes_read_as_shares_of_the_previous_version() {
        assert_eq!(change_of(100, false, None), "new file");
        assert_eq!(change_of(100, true, None), "changed");
        assert_eq!(
            change_of(2_000_000, true, Some(1_500_000)),
            "75% shared with the previous version, 500.0 KB new"
        );
        assert_eq!(
            change_of(10, true, Some(99)),
            "100% shared with the previous version, 0 B new"
        );
    }
}
