//! The hub's pages, on its HTTPS port under `/ui`: server-rendered HTML (minijinja
//! templates compiled into the binary, escaped by default), no scripts, no external
//! fonts or styles, so they work air-gapped and without JavaScript. Access follows the
//! API's rules ([`authorize`]): a repository someone may not read is a 404, as on the
//! API. See [`session`] for signing in and CSRF.

mod asset;
mod browse;
pub mod session;

use std::sync::{Arc, OnceLock};

use axum::extract::{Form, Path as UrlPath, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use minijinja::{context, Environment, Value};

use crate::error::HubError;
use crate::meta::{AccountChange, Role, User};
use crate::server::auth::authorize;
use crate::server::state::HubState;
use session::{cookie, csrf_for, same, set_cookie, LOGIN, SESSION};

pub fn routes() -> Router<Arc<HubState>> {
    Router::new()
        .route("/ui", get(home))
        .route("/ui/", get(home))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/repos", get(repos))
        .route("/ui/r/{owner}/{name}", get(browse::history))
        .route("/ui/r/{owner}/{name}/tree/{rev}", get(browse::tree_root))
        .route("/ui/r/{owner}/{name}/tree/{rev}/", get(browse::tree_root))
        .route(
            "/ui/r/{owner}/{name}/tree/{rev}/{*path}",
            get(browse::tree_path),
        )
        .route(
            "/ui/r/{owner}/{name}/project/{rev}/{*path}",
            get(browse::project),
        )
        .route("/ui/r/{owner}/{name}/locks", get(locks))
        .route("/ui/r/{owner}/{name}/asset/{recipe}", get(asset::asset))
        .route(
            "/ui/r/{owner}/{name}/asset/{recipe}/download",
            get(asset::download),
        )
        .route("/ui/r/{owner}/{name}/storage", get(storage))
        .route(
            "/ui/r/{owner}/{name}/derived/{recipe}/{kind}",
            get(derived_file),
        )
        .route("/ui/r/{owner}/{name}/locks/{id}/unlock", post(unlock))
}

fn templates() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, source) in [
            ("base.html", include_str!("templates/base.html")),
            ("login.html", include_str!("templates/login.html")),
            ("error.html", include_str!("templates/error.html")),
            ("repos.html", include_str!("templates/repos.html")),
            ("repo.html", include_str!("templates/repo.html")),
            ("locks.html", include_str!("templates/locks.html")),
            ("asset.html", include_str!("templates/asset.html")),
            ("storage.html", include_str!("templates/storage.html")),
            ("tree.html", include_str!("templates/tree.html")),
            ("project.html", include_str!("templates/project.html")),
        ] {
            env.add_template(name, source)
                .expect("the built-in templates parse");
        }
        env
    })
}

/// Headers every page carries: nothing but this hub may supply scripts, styles beyond
/// the page's own, media or frames.
fn page(status: StatusCode, html: String) -> Response {
    let mut response = (status, axum::response::Html(html)).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; media-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, header::HeaderValue::from_static(value));
    }
    response
}

fn render(status: StatusCode, name: &str, ctx: Value) -> Response {
    match templates().get_template(name).and_then(|t| t.render(ctx)) {
        Ok(html) => page(status, html),
        Err(e) => {
            tracing::error!("rendering {name}: {e:#}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered\n",
            )
                .into_response()
        }
    }
}

/// A signed-in browser: its session token, the user, and its forms' CSRF value.
struct Session {
    token: String,
    user: User,
    csrf: String,
}

/// The session the request's cookie names, or the answer to give instead (to the
/// sign-in page).
async fn signed_in(state: &HubState, headers: &HeaderMap) -> Result<Session, Response> {
    let to_login = || Redirect::to("/ui/login").into_response();
    let Some(token) = cookie(headers, SESSION) else {
        return Err(to_login());
    };
    match state.meta.user_for_token(&token).await {
        Ok(Some(user)) => Ok(Session {
            csrf: csrf_for(&token),
            token,
            user,
        }),
        Ok(None) => Err(to_login()),
        Err(e) => Err(failure(None, &HubError::from(e))),
    }
}

/// The page for a refusal or failure.
fn failure(session: Option<&Session>, e: &HubError) -> Response {
    let (_, status) = e.codes();
    if status == StatusCode::UNAUTHORIZED {
        return Redirect::to("/ui/login").into_response();
    }
    let heading = match status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::SERVICE_UNAVAILABLE => "Unavailable",
        _ if status.is_client_error() => "Refused",
        _ => "Something went wrong",
    };
    render(
        status,
        "error.html",
        context! {
            heading,
            message => e.to_string(),
            user => session.map(|s| s.user.name.clone()),
            csrf => session.map(|s| s.csrf.clone()),
        },
    )
}

/// A form posted without this session's CSRF value: refused, changing nothing.
fn forged(session: &Session) -> Response {
    failure(
        Some(session),
        &HubError::Forbidden(
            "the form did not carry this session's CSRF token; nothing was changed (reload the page and try again)"
                .into(),
        ),
    )
}

async fn home(State(state): State<Arc<HubState>>, headers: HeaderMap) -> Response {
    match signed_in(&state, &headers).await {
        Ok(_) => Redirect::to("/ui/repos").into_response(),
        Err(answer) => answer,
    }
}

async fn login_page() -> Response {
    login_form(StatusCode::OK, None)
}

/// The sign-in form with a fresh double-submit CSRF value.
fn login_form(status: StatusCode, message: Option<&str>) -> Response {
    let csrf = match crate::meta::random_hex(16) {
        Ok(csrf) => csrf,
        Err(e) => return failure(None, &HubError::from(e)),
    };
    let mut response = render(
        status,
        "login.html",
        context! { login_csrf => csrf.clone(), message },
    );
    set_cookie(&mut response, LOGIN, &csrf, 600);
    response
}

#[derive(serde::Deserialize)]
struct LoginForm {
    token: String,
    #[serde(default)]
    csrf: String,
}

async fn login(
    State(state): State<Arc<HubState>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let expected = cookie(&headers, LOGIN).unwrap_or_default();
    if expected.is_empty() || !same(&form.csrf, &expected) {
        return login_form(
            StatusCode::FORBIDDEN,
            Some("The sign-in form had expired or did not come from this hub. Try again."),
        );
    }
    let user = match state.meta.user_for_token(form.token.trim()).await {
        Ok(Some(user)) => user,
        Ok(None) => {
            return login_form(
                StatusCode::UNAUTHORIZED,
                Some("The hub does not know this token."),
            )
        }
        Err(e) => return failure(None, &HubError::from(e)),
    };
    let issued = state
        .meta
        .change_account(
            &AccountChange::IssueSession {
                user: user.name.clone(),
                expires: crate::meta::unix_now() + i64::from(state.session_ttl),
            },
            &format!("{} (web sign-in)", user.name),
        )
        .await;
    let token = match issued {
        Ok(Some(token)) => token,
        Ok(None) => return failure(None, &HubError::Forbidden("no session was issued".into())),
        Err(e) => return failure(None, &HubError::from(e)),
    };
    let mut response = Redirect::to("/ui/repos").into_response();
    set_cookie(&mut response, SESSION, &token, state.session_ttl);
    set_cookie(&mut response, LOGIN, "", 0);
    response
}

#[derive(serde::Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(state): State<Arc<HubState>>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let session = match signed_in(&state, &headers).await {
        Ok(session) => session,
        Err(answer) => return answer,
    };
    if !same(&form.csrf, &session.csrf) {
        return forged(&session);
    }
    let revoked = state
        .meta
        .change_account(
            &AccountChange::RevokeToken {
                token: session.token.clone(),
            },
            &format!("{} (web sign-out)", session.user.name),
        )
        .await;
    if let Err(e) = revoked {
        return failure(Some(&session), &HubError::from(e));
    }
    let mut response = Redirect::to("/ui/login").into_response();
    set_cookie(&mut response, SESSION, "", 0);
    response
}

async fn repos(State(state): State<Arc<HubState>>, headers: HeaderMap) -> Response {
    let session = match signed_in(&state, &headers).await {
        Ok(session) => session,
        Err(answer) => return answer,
    };
    let repos = match state.meta.repos_for(&session.user).await {
        Ok(repos) => repos,
        Err(e) => return failure(Some(&session), &HubError::from(e)),
    };
    let repos: Vec<Value> = repos
        .into_iter()
        .map(|(name, role)| context! { name, role => role.as_str() })
        .collect();
    render(
        StatusCode::OK,
        "repos.html",
        context! { user => session.user.name, csrf => session.csrf, repos },
    )
}

/// The session and the caller it is on `owner/name` with at least `need`, or the page
/// to answer with instead.
async fn member(
    state: &HubState,
    headers: &HeaderMap,
    owner: &str,
    name: &str,
    need: Role,
) -> Result<(Session, crate::server::auth::Caller), Response> {
    let session = signed_in(state, headers).await?;
    if !dits_wire::url::valid_name(owner) || !dits_wire::url::valid_name(name) {
        return Err(failure(
            Some(&session),
            &HubError::NotFound("no such repository".into()),
        ));
    }
    match authorize(state, &session.token, &format!("{owner}/{name}"), need).await {
        Ok(caller) => Ok((session, caller)),
        Err(e) => Err(failure(Some(&session), &e)),
    }
}

async fn locks(
    State(state): State<Arc<HubState>>,
    UrlPath((owner, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let (session, caller) = match member(&state, &headers, &owner, &name, Role::Read).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    locks_page(&state, &session, &caller, StatusCode::OK, None).await
}

async fn locks_page(
    state: &HubState,
    session: &Session,
    caller: &crate::server::auth::Caller,
    status: StatusCode,
    message: Option<String>,
) -> Response {
    let listed = match caller
        .locks(state)
        .list(None, None, None, None, Some(1000))
        .await
    {
        Ok(listed) => listed,
        Err(e) => return failure(Some(session), &e),
    };
    let locks: Vec<Value> = listed
        .locks
        .into_iter()
        .map(|lock| {
            context! {
                id => lock.id,
                path => lock.path,
                mine => lock.owner.name == session.user.name,
                owner => lock.owner.name,
                since => lock.locked_at,
                branch => lock.branch,
            }
        })
        .collect();
    render(
        status,
        "locks.html",
        context! {
            user => session.user.name.clone(), csrf => session.csrf.clone(),
            repo => caller.repo_name.clone(), locks, message,
            admin => caller.role == Role::Admin,
        },
    )
}

async fn unlock(
    State(state): State<Arc<HubState>>,
    UrlPath((owner, name, id)): UrlPath<(String, String, String)>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let (session, caller) = match member(&state, &headers, &owner, &name, Role::Write).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    if !same(&form.csrf, &session.csrf) {
        return forged(&session);
    }
    // Someone else's lock needs the admin role; the lock service checks it.
    let force = caller.role == Role::Admin;
    match caller.locks(&state).unlock(&id, force).await {
        Ok(done) => {
            let message = match done.forced_by {
                Some(by) => format!(
                    "{} unlocked by {by} (it was {}'s)",
                    done.lock.path, done.lock.owner.name
                ),
                None => format!("{} unlocked", done.lock.path),
            };
            locks_page(&state, &session, &caller, StatusCode::OK, Some(message)).await
        }
        Err(e) => failure(Some(&session), &e),
    }
}

/// What the repository's media would take whole, what it takes, and the hub's bytes per
/// storage class.
async fn storage(
    State(state): State<Arc<HubState>>,
    UrlPath((owner, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let (session, caller) = match member(&state, &headers, &owner, &name, Role::Read).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let stats = match state.meta.repo_stats(caller.repo).await {
        Ok(stats) => stats,
        Err(e) => return failure(Some(&session), &HubError::from(e)),
    };
    let ratio = if stats.stored_bytes == 0 {
        "nothing stored yet".to_string()
    } else {
        format!(
            "{:.2}x: every version whole would take that many times what is stored",
            stats.logical_bytes as f64 / stats.stored_bytes as f64
        )
    };
    let classes: Vec<Value> = state
        .stats
        .bytes_per_class
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(name, bytes)| context! { name, bytes => human_bytes(*bytes) })
        .collect();
    render(
        StatusCode::OK,
        "storage.html",
        context! {
            user => session.user.name, csrf => session.csrf, repo => caller.repo_name,
            versions => stats.versions, logical => human_bytes(stats.logical_bytes),
            stored => human_bytes(stats.stored_bytes), objects => stats.objects, ratio, classes,
        },
    )
}

/// A poster, strip or proxy for the pages (the session's cookie, not a bearer token),
/// with byte ranges for the player.
async fn derived_file(
    State(state): State<Arc<HubState>>,
    UrlPath((owner, name, recipe, kind)): UrlPath<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let (session, caller) = match member(&state, &headers, &owner, &name, Role::Read).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    match crate::server::derived::find(&state, caller.repo, &recipe, &kind).await {
        Ok((found, kind)) => {
            let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
            crate::server::derived::http_answer(state.clone(), found, kind, range)
        }
        Err(e) => failure(Some(&session), &e),
    }
}

/// A repository path as it goes in a link: each component percent-encoded, the `/`
/// between them kept.
fn href(path: &str) -> String {
    const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    path.split('/')
        .map(|c| percent_encoding::utf8_percent_encode(c, COMPONENT).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// Bytes for people: 1.5 GB, 640 KB.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_renders_and_escapes_what_users_wrote() {
        let html = templates()
            .get_template("repos.html")
            .unwrap()
            .render(context! {
                user => "<script>alert(1)</script>", csrf => "c",
                repos => vec![context! { name => "a/b", role => "read" }],
            })
            .unwrap();
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("<script>alert"));
        for name in [
            "login.html",
            "error.html",
            "repo.html",
            "locks.html",
            "asset.html",
            "storage.html",
            "tree.html",
            "project.html",
        ] {
            templates()
                .get_template(name)
                .unwrap()
                .render(context! { user => "u", csrf => "c", repo => "a/b", heading => "h", message => "m" })
                .unwrap();
        }
    }

    #[test]
    fn links_encode_each_path_component() {
        assert_eq!(href("shots/take 1#2.mov"), "shots/take%201%232.mov");
        assert_eq!(href("été/a?b"), "%C3%A9t%C3%A9/a%3Fb");
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_500_000), "1.5 MB");
        assert_eq!(human_bytes(4_000_000_000), "4.0 GB");
    }
}
