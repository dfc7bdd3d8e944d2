//! The HTTP side: the Node endpoints of `/api/v1` and a small `/admin`
//! interface for tests, on hyper's HTTP/1.1 server.
//!
//! | request | answer |
//! |---|---|
//! | `GET /api/v1/nodes[?limit=N&continue=T]` | NodeList with `metadata.resourceVersion` (and `continue`) |
//! | `GET /api/v1/nodes?watch=1&resourceVersion=N[&allowWatchBookmarks=true][&timeoutSeconds=S]` | chunked stream of `{"type","object"}` lines; from a compacted N: an `ERROR` event with a 410 Status (or a plain 410 response, see `goneAs`) |
//! | `GET /api/v1/nodes/NAME[/status]` | the Node |
//! | `POST /api/v1/nodes`, `DELETE /api/v1/nodes/NAME` | create, delete |
//! | `PATCH /api/v1/nodes/NAME[/status]` | merge or strategic merge patch (see [`crate::patch`]) |
//! | `GET /apis/coordination.k8s.io/v1/namespaces/NS/leases[?labelSelector=k=v]` | LeaseList |
//! | `POST`, `GET`/`PUT`/`DELETE .../leases[/NAME]` | create (409 when taken), get, replace (409 on a stale `resourceVersion`), delete; see [`crate::leases`] |
//! | `POST /admin/compact[?closeWatches=true]` | forget all events: older watches get 410 |
//! | `POST /admin/close-watches` | end every open watch (a dropped connection) |
//! | `POST /admin/bump` `{"by":N}` | move the revision on by N without a Node change (other resources being written: only bookmarks tell a Node watch) |
//! | `POST /admin/nodes` `{"name":N,"podCIDRs":[..]}` | create a Node as kubelet registers one, with the pod CIDRs node IPAM gave it |
//! | `POST /admin/nodes/NAME/pod-cidrs` `{"podCIDRs":[..]}` | set (or with `[]` clear) pod CIDRs, which the API refuses to change |
//! | `DELETE /admin/nodes/NAME` | delete a Node |
//! | `POST /admin/throttle` `{"requests":N,"retryAfterSeconds":S[,"plainText":true]}` | the next N API requests get 429 with `Retry-After: S` (a `Status` body, or kube-apiserver's plain-text one from its max-in-flight filter) |
//! | `POST /admin/settings` `{"goneAs":"event"\|"status","bookmarkIntervalMs":N}` | how 410 is told; how often watches get bookmarks |
//! | `GET /admin/stats` | requests served per kind, revision, open watches |
//!
//! With a bearer token configured, `/api` requests without it get 401;
//! `/admin` never asks.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::cluster::{Cluster, Event, Failure, Part};
use crate::patch::PatchKind;

type Body = BoxBody<Bytes, Infallible>;

/// How a watch from a compacted revision is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoneAs {
    /// 200, then one `ERROR` event holding a 410 Status (the watch cache).
    Event,
    /// A plain 410 response (a watch served straight from etcd).
    Status,
}

#[derive(Debug)]
struct Settings {
    throttle_left: u32,
    retry_after: u64,
    throttle_plain: bool,
    gone_as: GoneAs,
    bookmark_interval: Duration,
}

/// Everything the server's requests share.
pub struct Shared {
    cluster: Mutex<Cluster>,
    /// Bumped on every change: wakes the watches.
    changed: watch::Sender<u64>,
    /// Bumped to end every open watch.
    closed: watch::Sender<u64>,
    settings: Mutex<Settings>,
    stats: Mutex<BTreeMap<&'static str, u64>>,
    token: Option<String>,
}

impl Shared {
    pub fn new(token: Option<String>) -> Arc<Shared> {
        Arc::new(Shared {
            cluster: Mutex::new(Cluster::default()),
            changed: watch::channel(0).0,
            closed: watch::channel(0).0,
            settings: Mutex::new(Settings {
                throttle_left: 0,
                retry_after: 1,
                throttle_plain: false,
                gone_as: GoneAs::Event,
                bookmark_interval: Duration::from_secs(1),
            }),
            stats: Mutex::new(BTreeMap::new()),
            token,
        })
    }

    fn count(&self, what: &'static str) {
        *self.stats.lock().expect("stats").entry(what).or_default() += 1;
    }

    fn cluster(&self) -> std::sync::MutexGuard<'_, Cluster> {
        self.cluster.lock().expect("cluster")
    }

    /// Runs a change and wakes the watches.
    fn change<T>(&self, f: impl FnOnce(&mut Cluster) -> T) -> T {
        let (out, rv) = {
            let mut c = self.cluster();
            let out = f(&mut c);
            (out, c.revision())
        };
        self.changed.send_replace(rv);
        out
    }
}

/// Accepts connections (plain HTTP) until the listener's task is dropped.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(shared.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Binds `addr` and serves on the current runtime; returns the bound
/// address (port 0 picks one).
pub async fn bind(addr: SocketAddr, shared: Arc<Shared>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(serve(listener, shared));
    Ok(local)
}

fn full(code: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())).boxed())
        .expect("response")
}

fn ok(body: &Value) -> Response<Body> {
    full(StatusCode::OK, body)
}

fn failure(f: &Failure) -> Response<Body> {
    full(
        StatusCode::from_u16(f.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &f.status(),
    )
}

fn result(r: Result<Value, Failure>) -> Response<Body> {
    match r {
        Ok(v) => ok(&v),
        Err(f) => failure(&f),
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
        } else {
            out.push(if b[i] == b'+' { b' ' } else { b[i] });
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query(req: &Request<Incoming>) -> BTreeMap<String, String> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn truthy(v: Option<&String>) -> bool {
    v.is_some_and(|v| v == "1" || v == "true")
}

async fn body_json(req: Request<Incoming>) -> Result<Value, Failure> {
    let bytes = req
        .into_body()
        .collect()
        .await
        .map_err(|e| Failure::new(400, "BadRequest", format!("reading the body: {e}")))?
        .to_bytes();
    if bytes.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| Failure::new(400, "BadRequest", format!("the body is not JSON: {e}")))
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    if let Some(rest) = path.strip_prefix("/admin/") {
        return Ok(admin(&shared, rest.to_string(), req).await);
    }
    if let Some(token) = &shared.token {
        let want = format!("Bearer {token}");
        if req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            != Some(want.as_str())
        {
            shared.count("unauthorized");
            return Ok(failure(&Failure::new(401, "Unauthorized", "Unauthorized")));
        }
    }
    let throttled = {
        let mut s = shared.settings.lock().expect("settings");
        (s.throttle_left > 0).then(|| {
            s.throttle_left -= 1;
            (s.retry_after, s.throttle_plain)
        })
    };
    if let Some((secs, plain)) = throttled {
        shared.count("throttled");
        let message = "Too many requests, please try again later.";
        let mut resp = if plain {
            Response::builder()
                .status(StatusCode::TOO_MANY_REQUESTS)
                .header("content-type", "text/plain; charset=utf-8")
                .body(Full::new(Bytes::from(format!("{message}\n"))).boxed())
                .expect("response")
        } else {
            let mut status = Failure::new(429, "TooManyRequests", message).status();
            status["details"] = json!({"retryAfterSeconds": secs});
            full(StatusCode::TOO_MANY_REQUESTS, &status)
        };
        resp.headers_mut()
            .insert("retry-after", secs.to_string().parse().expect("header"));
        return Ok(resp);
    }
    Ok(api(&shared, &path, req).await)
}

async fn api(shared: &Arc<Shared>, path: &str, req: Request<Incoming>) -> Response<Body> {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let method = req.method().clone();
    match (method, segs.as_slice()) {
        (Method::GET, ["version"]) => {
            ok(&json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-fake"}))
        }
        (Method::GET, ["api", "v1", "nodes"]) => {
            let q = query(&req);
            if truthy(q.get("watch")) {
                shared.count("watch");
                watch_nodes(shared, &q)
            } else {
                shared.count("list");
                list_nodes(shared, &q)
            }
        }
        (Method::POST, ["api", "v1", "nodes"]) => {
            shared.count("create");
            match body_json(req).await {
                Ok(node) => result(shared.change(|c| c.create(node))),
                Err(f) => failure(&f),
            }
        }
        (Method::GET, ["api", "v1", "nodes", name] | ["api", "v1", "nodes", name, "status"]) => {
            shared.count("get");
            result(shared.cluster().get(name))
        }
        (Method::DELETE, ["api", "v1", "nodes", name]) => {
            shared.count("delete");
            result(shared.change(|c| c.delete(name)))
        }
        (Method::PATCH, ["api", "v1", "nodes", name, rest @ ..]) => {
            let part = match rest {
                [] => Part::Main,
                ["status"] => Part::Status,
                _ => {
                    return failure(&Failure::new(
                        404,
                        "NotFound",
                        "the server could not find the requested resource",
                    ));
                }
            };
            shared.count(if part == Part::Main {
                "patch"
            } else {
                "patch-status"
            });
            let ct = req
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let Some(kind) = PatchKind::from_content_type(&ct) else {
                return failure(&Failure::new(
                    415,
                    "UnsupportedMediaType",
                    format!(
                        "the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json (got {ct:?})"
                    ),
                ));
            };
            let name = name.to_string();
            match body_json(req).await {
                Ok(p) => result(shared.change(|c| c.patch(&name, part, kind, &p))),
                Err(f) => failure(&f),
            }
        }
        (
            method,
            [
                "apis",
                "coordination.k8s.io",
                "v1",
                "namespaces",
                ns,
                "leases",
                rest @ ..,
            ],
        ) => {
            shared.count("leases");
            leases(shared, method, ns, rest.first().copied(), req).await
        }
        _ => failure(&Failure::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )),
    }
}

/// The Lease endpoints of one namespace (no watches: nothing waits on
/// them).
async fn leases(
    shared: &Arc<Shared>,
    method: Method,
    ns: &str,
    name: Option<&str>,
    req: Request<Incoming>,
) -> Response<Body> {
    let mut c = shared.cluster();
    match (method, name) {
        (Method::GET, None) => {
            let q = query(&req);
            let rv = c.revision();
            ok(&c
                .leases
                .list(ns, q.get("labelSelector").map(String::as_str), rv))
        }
        (Method::GET, Some(name)) => result(c.leases.get(ns, name)),
        (Method::DELETE, Some(name)) => result(c.leases.delete(ns, name)),
        (method @ (Method::POST | Method::PUT), name) => {
            drop(c);
            let body = match body_json(req).await {
                Ok(b) => b,
                Err(f) => return failure(&f),
            };
            let mut c = shared.cluster();
            let rv = c.next_revision();
            match (method, name) {
                (Method::POST, None) => match c.leases.create(ns, body, rv) {
                    Ok(v) => full(StatusCode::CREATED, &v),
                    Err(f) => failure(&f),
                },
                (Method::PUT, Some(name)) => result(c.leases.replace(ns, name, body, rv)),
                _ => failure(&Failure::new(405, "MethodNotAllowed", "not allowed here")),
            }
        }
        _ => failure(&Failure::new(405, "MethodNotAllowed", "not allowed here")),
    }
}

fn list_nodes(shared: &Shared, q: &BTreeMap<String, String>) -> Response<Body> {
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let c = shared.cluster();
    // A continue token is "<revision of the first page>:<last name served>".
    let (rv, after) = match q.get("continue").filter(|t| !t.is_empty()) {
        Some(token) => match token
            .split_once(':')
            .and_then(|(r, n)| Some((r.parse::<u64>().ok()?, n)))
        {
            Some((rv, _)) if rv < c.oldest() => {
                return failure(&Failure::gone(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                ));
            }
            Some((rv, name)) => (rv, Some(name.to_string())),
            None => return failure(&Failure::new(400, "BadRequest", "invalid continue token")),
        },
        None => (c.revision(), None),
    };
    let (items, more) = c.list(after.as_deref(), limit);
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(last) = more {
        meta["continue"] = json!(format!("{rv}:{last}"));
    }
    ok(&json!({"kind": "NodeList", "apiVersion": "v1", "metadata": meta, "items": items}))
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut s = json!({"type": kind, "object": object}).to_string();
    s.push('\n');
    Bytes::from(s)
}

fn bookmark(rv: u64) -> Bytes {
    event_line(
        "BOOKMARK",
        &json!({"kind": "Node", "apiVersion": "v1", "metadata": {"resourceVersion": rv.to_string()}}),
    )
}

fn watch_nodes(shared: &Arc<Shared>, q: &BTreeMap<String, String>) -> Response<Body> {
    let bookmarks = truthy(q.get("allowWatchBookmarks"));
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let (gone_as, every) = {
        let s = shared.settings.lock().expect("settings");
        (s.gone_as, s.bookmark_interval)
    };
    // Subscribed before the first batch is read, so a change committed
    // right after it still wakes this watch.
    let signals = Signals {
        changed: shared.changed.subscribe(),
        closed: shared.closed.subscribe(),
    };
    // What the watcher gets first, decided under the lock so no change
    // slips between it and the stream.
    let (start_rv, first): (u64, Result<Vec<Bytes>, Failure>) = {
        let c = shared.cluster();
        match q.get("resourceVersion").map(String::as_str) {
            // "Any" revision: the current state as ADDED, then changes.
            None | Some("") | Some("0") => {
                let (items, _) = c.list(None, usize::MAX);
                let lines = items
                    .into_iter()
                    .map(|mut n| {
                        n["kind"] = json!("Node");
                        n["apiVersion"] = json!("v1");
                        event_line("ADDED", &n)
                    })
                    .collect();
                (c.revision(), Ok(lines))
            }
            Some(v) => match v.parse::<u64>() {
                Ok(rv) => {
                    let evs = c.events_after(rv);
                    let last = evs
                        .as_ref()
                        .ok()
                        .and_then(|e| e.last())
                        .map_or(rv, |e| e.rv);
                    (
                        last,
                        evs.map(|e| e.iter().map(|e| event_line(e.kind, &e.object)).collect()),
                    )
                }
                Err(_) => {
                    return failure(&Failure::new(
                        400,
                        "BadRequest",
                        format!("invalid resource version {v:?}"),
                    ));
                }
            },
        }
    };
    // A watch from a compacted revision ends right after its ERROR event.
    let (first, gone) = match first {
        Ok(lines) => (lines, false),
        Err(f) if gone_as == GoneAs::Status => return failure(&f),
        Err(f) => (vec![event_line("ERROR", &f.status())], true),
    };
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let shared = shared.clone();
    tokio::spawn(async move {
        shared.count("watch-open");
        let watch = Watch {
            rv: start_rv,
            bookmarks,
            every,
            timeout,
        };
        feed(&shared, signals, tx, first, gone, watch).await;
        shared.count("watch-closed");
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(StreamBody::new(stream).boxed())
        .expect("response")
}

/// What wakes a watch: a change, or the admin closing every watch.
struct Signals {
    changed: watch::Receiver<u64>,
    closed: watch::Receiver<u64>,
}

/// One watch's position and options.
struct Watch {
    /// The last revision sent.
    rv: u64,
    bookmarks: bool,
    every: Duration,
    timeout: Duration,
}

/// Streams one watch until it times out, is closed by the admin, falls
/// behind a compaction, or its client goes away.
async fn feed(
    shared: &Shared,
    signals: Signals,
    tx: mpsc::Sender<Bytes>,
    first: Vec<Bytes>,
    done: bool,
    w: Watch,
) {
    let Signals {
        mut changed,
        mut closed,
    } = signals;
    let Watch {
        mut rv,
        bookmarks,
        every,
        timeout,
    } = w;
    for line in first {
        if tx.send(line).await.is_err() {
            return;
        }
    }
    if done {
        return;
    }
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        let bookmark_due = tokio::select! {
            _ = &mut deadline => return,
            _ = closed.changed() => return,
            _ = tx.closed() => return,
            r = changed.changed() => { if r.is_err() { return; } false }
            _ = tick.tick() => bookmarks,
        };
        // The events and the revision they reach, read together: a
        // bookmark may then carry the cluster's revision (moved on by
        // other resources too, as in the real server) without skipping a
        // change committed meanwhile.
        let (pending, now): (Result<Vec<Event>, Failure>, u64) = {
            let c = shared.cluster();
            (c.events_after(rv), c.revision())
        };
        match pending {
            Ok(evs) => {
                for e in evs {
                    rv = e.rv;
                    if tx.send(event_line(e.kind, &e.object)).await.is_err() {
                        return;
                    }
                }
            }
            Err(f) => {
                let _ = tx.send(event_line("ERROR", &f.status())).await;
                return;
            }
        }
        if bookmark_due {
            rv = rv.max(now);
            if tx.send(bookmark(rv)).await.is_err() {
                return;
            }
        }
    }
}

async fn admin(shared: &Arc<Shared>, what: String, req: Request<Incoming>) -> Response<Body> {
    let q = query(&req);
    let method = req.method().clone();
    let body = match body_json(req).await {
        Ok(b) => b,
        Err(f) => return failure(&f),
    };
    match (method, what.as_str()) {
        (Method::POST, "compact") => {
            let rv = shared.change(|c| {
                c.compact();
                c.revision()
            });
            if truthy(q.get("closeWatches")) {
                shared.closed.send_modify(|g| *g += 1);
            }
            ok(&json!({"compactedTo": rv}))
        }
        (Method::POST, "bump") => {
            let by = body["by"].as_u64().unwrap_or(1);
            let rv = shared.change(|c| {
                c.bump(by);
                c.revision()
            });
            ok(&json!({"resourceVersion": rv}))
        }
        (Method::POST, "close-watches") => {
            shared.closed.send_modify(|g| *g += 1);
            ok(&json!({}))
        }
        (Method::POST, "throttle") => {
            let mut s = shared.settings.lock().expect("settings");
            s.throttle_left = body["requests"].as_u64().unwrap_or(1) as u32;
            s.retry_after = body["retryAfterSeconds"].as_u64().unwrap_or(1);
            s.throttle_plain = body["plainText"].as_bool().unwrap_or(false);
            ok(&json!({"requests": s.throttle_left, "retryAfterSeconds": s.retry_after}))
        }
        (Method::POST, "settings") => {
            let mut s = shared.settings.lock().expect("settings");
            match body["goneAs"].as_str() {
                Some("status") => s.gone_as = GoneAs::Status,
                Some("event") => s.gone_as = GoneAs::Event,
                Some(other) => {
                    return failure(&Failure::new(
                        400,
                        "BadRequest",
                        format!("goneAs {other:?}: event or status"),
                    ));
                }
                None => {}
            }
            if let Some(ms) = body["bookmarkIntervalMs"].as_u64() {
                s.bookmark_interval = Duration::from_millis(ms.max(10));
            }
            ok(&json!({}))
        }
        (Method::POST, "nodes") => {
            let Some(name) = body["name"].as_str().filter(|n| !n.is_empty()) else {
                return failure(&Failure::new(400, "BadRequest", "name: required"));
            };
            let cidrs = string_list(&body["podCIDRs"]);
            let cidrs: Vec<&str> = cidrs.iter().map(String::as_str).collect();
            result(shared.change(|c| c.create(crate::cluster::node(name, &cidrs))))
        }
        (method, path) if path.starts_with("nodes/") => {
            let rest = &path["nodes/".len()..];
            match (method, rest.split_once('/')) {
                (Method::DELETE, None) => result(shared.change(|c| c.delete(rest))),
                (Method::POST, Some((name, "pod-cidrs"))) => {
                    let cidrs = string_list(&body["podCIDRs"]);
                    result(shared.change(|c| c.set_pod_cidrs(name, &cidrs)))
                }
                _ => failure(&Failure::new(
                    404,
                    "NotFound",
                    format!("no admin endpoint {what:?}"),
                )),
            }
        }
        (Method::GET, "stats") => {
            let stats = shared.stats.lock().expect("stats").clone();
            let c = shared.cluster();
            ok(&json!({"requests": stats, "resourceVersion": c.revision(), "oldest": c.oldest()}))
        }
        _ => failure(&Failure::new(
            404,
            "NotFound",
            format!("no admin endpoint {what:?}"),
        )),
    }
}

fn string_list(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
