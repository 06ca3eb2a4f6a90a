//! The Janus HTTP API (REST + long poll), as much as the VideoRoom target
//! needs: a session (`create`), a plugin handle (`attach`), synchronous
//! plugin requests (answered in the POST), asynchronous ones (`ack`, then
//! an event with the same transaction on the long poll), keepalives, and
//! the session's events.
//!
//! One long-poll task per session (`GET {base}/{session}?maxev=N`) puts
//! every event in a mailbox; waiters take the event they want from it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Bound on a plain API call.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// Janus holds a long poll for 30 s: the GET may take that long.
const POLL_TIMEOUT: Duration = Duration::from_secs(45);
/// Events taken per long poll.
const POLL_MAX_EVENTS: u32 = 10;
/// Janus ends a session after 60 s without a request: a keepalive every
/// 15 s (the long poll counts too, but not while it is held).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
/// Events nobody waited for are kept up to this many (oldest dropped).
const MAILBOX_LIMIT: usize = 256;
/// Pause after a failed long poll.
const POLL_RETRY: Duration = Duration::from_millis(200);
/// Consecutive failed long polls after which the session counts as gone.
const POLL_FAILURES: u32 = 25;

/// A refusal from Janus or from the plugin: `error_code` and `error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("janus error {code}: {reason}")]
pub struct JanusError {
    pub code: i64,
    pub reason: String,
}

/// Events of a session not yet taken.
#[derive(Default)]
struct Mailbox {
    events: Mutex<VecDeque<Value>>,
    /// Bumped on every new event (and when the session ends).
    arrived: watch::Sender<u64>,
    /// The session is gone (destroyed, timed out, unreachable).
    closed: AtomicBool,
    /// A handle was hung up or detached (one handle per session here).
    hung_up: AtomicBool,
}

impl Mailbox {
    fn push(&self, event: Value) {
        if matches!(event["janus"].as_str(), Some("hangup" | "detached")) {
            self.hung_up.store(true, Ordering::Release);
        }
        if let Ok(mut events) = self.events.lock() {
            if events.len() >= MAILBOX_LIMIT {
                events.pop_front();
            }
            events.push_back(event);
        }
        self.arrived.send_modify(|n| *n += 1);
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.arrived.send_modify(|n| *n += 1);
    }

    fn take(&self, wanted: &(dyn Fn(&Value) -> bool + Sync)) -> Option<Value> {
        let mut events = self.events.lock().ok()?;
        let at = events.iter().position(wanted)?;
        events.remove(at)
    }
}

/// A Janus session with its long poll and keepalives.
pub struct Session {
    http: reqwest::Client,
    /// `{base}/{session_id}`
    url: String,
    mailbox: Arc<Mailbox>,
    tasks: Vec<JoinHandle<()>>,
}

impl Session {
    /// `POST {base} {"janus":"create"}`, then starts polling.
    pub async fn create(http: &reqwest::Client, base: &str) -> anyhow::Result<Session> {
        let base = base.trim_end_matches('/');
        let reply = post(http, base, json!({"janus": "create"})).await?;
        let id = success_data_id(&reply).context("creating a Janus session")?;
        let url = format!("{base}/{id}");
        let mailbox = Arc::new(Mailbox::default());
        let poller = tokio::spawn(poll(http.clone(), url.clone(), Arc::clone(&mailbox)));
        let keepalive = tokio::spawn(keepalive(http.clone(), url.clone()));
        Ok(Session {
            http: http.clone(),
            url,
            mailbox,
            tasks: vec![poller, keepalive],
        })
    }

    /// Attaches a handle to `plugin`.
    pub async fn attach(&self, plugin: &str) -> anyhow::Result<Handle> {
        let reply = post(
            &self.http,
            &self.url,
            json!({"janus": "attach", "plugin": plugin}),
        )
        .await?;
        let id = success_data_id(&reply).with_context(|| format!("attaching {plugin}"))?;
        Ok(Handle {
            http: self.http.clone(),
            url: format!("{}/{id}", self.url),
            id,
            mailbox: Arc::clone(&self.mailbox),
        })
    }

    /// True once the session is gone or its handle hung up.
    pub fn is_closed(&self) -> bool {
        self.mailbox.closed.load(Ordering::Acquire) || self.mailbox.hung_up.load(Ordering::Acquire)
    }

    /// Destroys the session (its handles hang up) and stops polling.
    pub async fn destroy(&self) {
        let _ = post(&self.http, &self.url, json!({"janus": "destroy"})).await;
        for task in &self.tasks {
            task.abort();
        }
        self.mailbox.close();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A plugin handle of a session.
#[derive(Clone)]
pub struct Handle {
    http: reqwest::Client,
    /// `{base}/{session_id}/{handle_id}`
    url: String,
    id: u64,
    mailbox: Arc<Mailbox>,
}

impl Handle {
    /// A synchronous plugin request: the plugin's `data`, or its error.
    pub async fn request(&self, body: Value) -> anyhow::Result<Value> {
        let reply = post(
            &self.http,
            &self.url,
            json!({"janus": "message", "body": body}),
        )
        .await?;
        if reply["janus"] != "success" {
            return Err(janus_error(&reply)).context("unexpected reply");
        }
        let data = reply["plugindata"]["data"].clone();
        plugin_error(&data)?;
        Ok(data)
    }

    /// An asynchronous plugin request (with a JSEP, if any): waits for the
    /// event that answers it and returns the whole event.
    pub async fn call(
        &self,
        body: Value,
        jsep: Option<Value>,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let transaction = transaction();
        let mut message = json!({"janus": "message", "body": body, "transaction": transaction});
        if let Some(jsep) = jsep {
            message["jsep"] = jsep;
        }
        let reply = send(&self.http, &self.url, &message).await?;
        match reply["janus"].as_str() {
            Some("ack") => {}
            // Some requests are answered at once.
            Some("event") | Some("success") => return event_outcome(reply),
            _ => return Err(janus_error(&reply)).context("unexpected reply"),
        }
        let event = self
            .wait(
                &|e: &Value| e["transaction"].as_str() == Some(&transaction),
                timeout,
            )
            .await?;
        event_outcome(event)
    }

    /// Waits (at most `timeout`) for an event of this handle that `wanted`
    /// picks, and takes it.
    pub async fn wait(
        &self,
        wanted: &(dyn Fn(&Value) -> bool + Sync),
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let id = self.id;
        let mine = |e: &Value| e["sender"].as_u64() == Some(id) && wanted(e);
        let mut arrived = self.mailbox.arrived.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            arrived.borrow_and_update();
            if let Some(event) = self.mailbox.take(&mine) {
                return Ok(event);
            }
            if self.mailbox.closed.load(Ordering::Acquire) {
                bail!("the Janus session ended");
            }
            match tokio::time::timeout_at(deadline, arrived.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => bail!("the Janus session ended"),
                Err(_) => bail!("no answer from Janus in {timeout:?}"),
            }
        }
    }
}

/// The plugin's answer in an event (with its `jsep`), or its error.
fn event_outcome(event: Value) -> anyhow::Result<Value> {
    if event["janus"] == "error" {
        return Err(janus_error(&event).into());
    }
    plugin_error(&event["plugindata"]["data"])?;
    Ok(event)
}

fn plugin_error(data: &Value) -> Result<(), JanusError> {
    match data["error_code"].as_i64() {
        Some(code) => Err(JanusError {
            code,
            reason: data["error"].as_str().unwrap_or_default().to_string(),
        }),
        None => Ok(()),
    }
}

fn janus_error(reply: &Value) -> JanusError {
    JanusError {
        code: reply["error"]["code"].as_i64().unwrap_or(0),
        reason: reply["error"]["reason"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| reply.to_string()),
    }
}

/// The `data.id` of a `success` reply.
fn success_data_id(reply: &Value) -> anyhow::Result<u64> {
    if reply["janus"] != "success" {
        return Err(janus_error(reply).into());
    }
    reply["data"]["id"]
        .as_u64()
        .ok_or_else(|| anyhow!("no id in {reply}"))
}

fn transaction() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// POSTs a request (with a fresh transaction) and returns the reply.
async fn post(http: &reqwest::Client, url: &str, mut request: Value) -> anyhow::Result<Value> {
    request["transaction"] = Value::String(transaction());
    send(http, url, &request).await
}

async fn send(http: &reqwest::Client, url: &str, request: &Value) -> anyhow::Result<Value> {
    let what = request["janus"].as_str().unwrap_or("request").to_string();
    let response = http
        .post(url)
        .json(request)
        .timeout(CALL_TIMEOUT)
        .send()
        .await
        .with_context(|| format!("Janus {what}: no answer from {url}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("Janus {what}: HTTP {status}: {text}");
    }
    serde_json::from_str(&text).with_context(|| format!("Janus {what}: not JSON: {text:?}"))
}

/// The long poll: every event into the mailbox until the session is gone.
async fn poll(http: reqwest::Client, url: String, mailbox: Arc<Mailbox>) {
    let poll_url = format!("{url}?maxev={POLL_MAX_EVENTS}");
    let mut failures = 0;
    loop {
        let reply = async {
            let response = http.get(&poll_url).timeout(POLL_TIMEOUT).send().await?;
            response.json::<Value>().await
        }
        .await;
        let events = match reply {
            Ok(Value::Array(events)) => events,
            Ok(event) => vec![event],
            Err(_) => {
                failures += 1;
                if failures >= POLL_FAILURES {
                    break;
                }
                tokio::time::sleep(POLL_RETRY).await;
                continue;
            }
        };
        failures = 0;
        for event in events {
            match event["janus"].as_str() {
                Some("keepalive") => {}
                // "No such session": destroyed or timed out.
                Some("error") if event["error"]["code"].as_i64() == Some(458) => {
                    mailbox.close();
                    return;
                }
                _ => mailbox.push(event),
            }
        }
    }
    mailbox.close();
}

async fn keepalive(http: reqwest::Client, url: String) {
    let mut tick = tokio::time::interval(KEEPALIVE_INTERVAL);
    tick.tick().await;
    loop {
        tick.tick().await;
        let _ = post(&http, &url, json!({"janus": "keepalive"})).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_errors_carry_their_code() {
        let data = json!({"videoroom": "event", "error_code": 427, "error": "Room exists"});
        let e = plugin_error(&data).expect_err("an error");
        assert_eq!(e.code, 427);
        assert!(plugin_error(&json!({"videoroom": "created"})).is_ok());
        let reply = json!({"janus": "error", "error": {"code": 458, "reason": "No such session"}});
        assert_eq!(janus_error(&reply).code, 458);
        assert!(success_data_id(&reply).is_err());
        let ok = json!({"janus": "success", "data": {"id": 42}});
        assert_eq!(success_data_id(&ok).expect("an id"), 42);
    }

    #[tokio::test]
    async fn waiters_take_their_event_and_leave_the_others() {
        let mailbox = Arc::new(Mailbox::default());
        let handle = Handle {
            http: reqwest::Client::new(),
            url: String::new(),
            id: 7,
            mailbox: Arc::clone(&mailbox),
        };
        mailbox.push(json!({"janus": "webrtcup", "sender": 8}));
        let waiting = {
            let handle = handle.clone();
            tokio::spawn(async move {
                handle
                    .wait(&|e| e["janus"] == "webrtcup", Duration::from_secs(5))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        mailbox.push(json!({"janus": "webrtcup", "sender": 7}));
        let event = waiting.await.expect("joined").expect("the event");
        assert_eq!(event["sender"], 7);
        assert_eq!(mailbox.events.lock().expect("lock").len(), 1);
        mailbox.push(json!({"janus": "hangup", "sender": 7}));
        assert!(mailbox.hung_up.load(Ordering::Acquire));
        mailbox.close();
        let e = handle
            .wait(&|e| e["janus"] == "slowlink", Duration::from_secs(5))
            .await
            .expect_err("closed");
        assert!(e.to_string().contains("ended"), "{e}");
    }
}
