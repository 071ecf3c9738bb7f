//! `cutover proxy` as a real process in front of two real `cutover node`s: forwarding, a
//! switch driven over gRPC with a token, the route kept across `kill -9`, and bad flags.

use cutover_proto::v1::{
    Color, PauseRequest, SwitchRequest, proxy_control_client::ProxyControlClient,
};
use cutover_tests::harness::http;
use tonic::{Code, Request, metadata::MetadataValue};

use crate::{cluster, runtime};

fn authorized<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", MetadataValue::from_static("Bearer s3cret"));
    request
}

#[test]
fn a_switched_proxy_keeps_routing_to_green_across_kill_9() {
    let cluster = cluster();
    let blue = cluster.start_node("blue", &[]).expect("blue starts");
    let green = cluster.start_node("green", &[]).expect("green starts");
    let token_file = cluster.dir("proxy").expect("dir").join("token");
    std::fs::write(&token_file, "s3cret\n").expect("token file");
    let token = token_file.display().to_string();
    let proxy = cluster
        .start_proxy(
            "proxy",
            &[format!("http://{}", blue.http)],
            &[format!("http://{}", green.http)],
            &[
                "--token-file",
                &token,
                "--upstream-protocol",
                "h2c",
                // As a sidecar runs it.
                "--workers",
                "1",
            ],
        )
        .expect("proxy starts");

    let put = |path: &str| http::put(proxy.listen, path, r#"{"name":"Ada"}"#).expect("PUT");
    assert_eq!(put("/v1/users/a").status, 201);
    let workers = std::fs::read_dir(format!("/proc/{}/task", proxy.daemon.pid()))
        .expect("the proxy's threads")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("proxy-worker-"))
        .count();
    assert_eq!(workers, 1, "--workers 1");
    assert_eq!(
        http::get(blue.http, "/v1/users/a").expect("GET").status,
        200
    );

    runtime().block_on(async {
        let mut control = ProxyControlClient::connect(proxy.admin_url())
            .await
            .expect("connect");
        let refused = control
            .pause(PauseRequest {
                epoch: 1,
                ..Default::default()
            })
            .await
            .expect_err("no token");
        assert_eq!(refused.code(), Code::Unauthenticated);
        control
            .pause(authorized(PauseRequest {
                epoch: 1,
                ..Default::default()
            }))
            .await
            .expect("pause");
        control
            .switch(authorized(SwitchRequest {
                epoch: 1,
                color: Color::Green as i32,
            }))
            .await
            .expect("switch");
    });
    assert_eq!(put("/v1/users/b").status, 201);
    assert_eq!(
        http::get(green.http, "/v1/users/b").expect("GET").status,
        200
    );
    assert_eq!(
        http::get(blue.http, "/v1/users/b").expect("GET").status,
        404
    );

    let mut killed = proxy;
    killed.daemon.kill9().expect("kill -9");
    let proxy = cluster.restart_proxy("proxy", killed).expect("restarts");
    let route = http::get(proxy.admin, "/route")
        .expect("GET /route")
        .json()
        .expect("JSON");
    assert_eq!(route["active"], "green", "{route}");
    assert_eq!(route["epoch"], 1, "{route}");
    assert_eq!(
        http::get(proxy.listen, "/v1/users/b").expect("GET").status,
        200
    );
    assert_eq!(
        http::get(proxy.listen, "/v1/users/a").expect("GET").status,
        404,
        "blue's document is not visible: the proxy routes to green"
    );
    let metrics = http::get(proxy.admin, "/metrics").expect("metrics").text();
    assert!(metrics.contains("cutover_proxy_epoch 1"), "{metrics}");
    assert!(
        metrics.contains("cutover_proxy_active_color{color=\"green\"} 1"),
        "{metrics}"
    );
}

#[test]
fn bad_proxy_flags_are_refused_with_what_is_wrong() {
    let cluster = cluster();
    let state = cluster.dir("p").expect("dir").join("route.json");
    let state = state.display().to_string();
    let base = |blue: &str, extra: &[&str]| {
        let args: Vec<String> = [
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--blue",
            blue,
            "--green",
            "http://127.0.0.1:9",
            "--state-file",
            &state,
        ]
        .iter()
        .chain(extra)
        .map(|s| (*s).to_owned())
        .collect();
        cluster.run(args).expect("runs")
    };
    let scheme = base("ftp://127.0.0.1:1", &[]);
    assert_eq!(scheme.code, Some(1), "{}", scheme.stderr);
    assert!(
        scheme.stderr.contains("blue backend \"ftp://127.0.0.1:1\""),
        "{}",
        scheme.stderr
    );
    let zero = base("http://127.0.0.1:1", &["--hold-timeout", "0s"]);
    assert_eq!(zero.code, Some(2), "{}", zero.stderr);
    assert!(zero.stderr.contains("zero"), "{}", zero.stderr);
    let workers = base("http://127.0.0.1:1", &["--workers", "0"]);
    assert_eq!(workers.code, Some(2), "{}", workers.stderr);
    assert!(
        workers.stderr.contains("--workers") && workers.stderr.contains("0 is not in 1..=1024"),
        "{}",
        workers.stderr
    );

    std::fs::write(&state, "not json").expect("write");
    let corrupt = base("http://127.0.0.1:1", &[]);
    assert_eq!(corrupt.code, Some(1), "{}", corrupt.stderr);
    assert!(corrupt.stderr.contains("route.json"), "{}", corrupt.stderr);
}
