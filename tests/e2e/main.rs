//! End-to-end tests: the real `git`, the built `git-dits`, media from `ffmpeg`.

mod adoption;
mod attacks;
mod bad_input;
mod clean_working_file;
mod containers;
mod dedup;
mod direct;
mod encryption;
mod hostile_hub;
mod hub;
mod install;
mod lifecycle;
mod locks;
mod migrate;
mod mount;
mod network;
mod projects;
mod roundtrip;
mod s3;
mod scale;
mod store;
mod tracks;
mod web;
mod workers;

/// A library client of `hub`'s repository `repo` as the user holding `token`, trusting the
/// hub's certificate by its fingerprint: requests a `git` process would make, sent directly.
pub(crate) async fn hub_client(
    hub: &dits_tests::HubProcess,
    repo: &str,
    token: &str,
) -> git_remote_dits::Hub {
    let url = dits_wire::RemoteUrl::parse(&hub.url(repo)).unwrap();
    let trust = git_remote_dits::TrustSettings {
        fingerprint: Some(hub.fingerprint.clone()),
        ..Default::default()
    };
    git_remote_dits::Hub::connect(&url, &trust, token)
        .await
        .unwrap()
}
