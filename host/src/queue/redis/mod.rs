//! The Redis queue: many hosts and workers share one queue through one
//! Redis (or Redis Cluster).
//!
//! Every transition is one Lua script in `scripts/` (one file each, KEYS and
//! ARGV in its header, helpers in `common.lua`), run atomically by Redis and
//! called by SHA. All keys share the prefix's hash tag, so the scripts run
//! unchanged on a cluster. Events go out on a stream that the hosts read in
//! one consumer group: each event is handled by one host, and acknowledged
//! (and deleted) once handled.

mod cache;
mod conn;
mod endpoints;
mod plugins;
mod relay;

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::{RedisError, Script, Value};
use serde::Deserialize;
use uuid::Uuid;

pub use cache::RedisCache;
use conn::Conn;
pub use conn::RedisConfig;
pub use endpoints::RedisEndpoints;
pub use plugins::RedisPlugins;
pub use relay::RedisRelay;

use super::{
    ClaimRequest, Delivery, ExecutionEntry, Finished, Halt, Hold, Job, Lease, LeaseId, LeaseState, LiveExecution,
    Queue, QueueCounts, QueueError, QueueEvent, QueueSettings, Retried, UnrunTest, now_ms,
};
use crate::domain::{ExecutionStatus, ResultSummary, TestResult, TestStatus};

/// A worker's admission as kept in `P:admission` (worker -> JSON).
#[derive(serde::Serialize, serde::Deserialize)]
struct Admission {
    hold: Option<Hold>,
    /// Unix ms until which it stands.
    until: u64,
}

/// The consumer group of the hosts that store results.
const GROUP: &str = "hosts";
/// Jobs per `enqueue` call: large executions go in chunks, so no script
/// call carries an unbounded argument list.
const ENQUEUE_CHUNK: usize = 500;
/// Expired leases handled per `reap` call.
const REAP_BATCH: usize = 500;
/// Events left unacknowledged this long by a host are taken over by another
/// (the first one died).
const EVENT_TAKEOVER: Duration = Duration::from_secs(30);

macro_rules! script {
    ($name:literal) => {
        Script::new(concat!(include_str!("scripts/common.lua"), include_str!(concat!("scripts/", $name, ".lua"))))
    };
}

struct Scripts {
    enqueue: Script,
    claim: Script,
    heartbeat: Script,
    finish: Script,
    retry: Script,
    halt: Script,
    reap: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            enqueue: script!("enqueue"),
            claim: script!("claim"),
            heartbeat: script!("heartbeat"),
            finish: script!("finish"),
            retry: script!("retry"),
            halt: script!("halt"),
            reap: script!("reap"),
        }
    }
}

pub struct RedisQueue {
    conn: Conn,
    /// A connection of its own for blocking stream reads, which would
    /// otherwise hold up every other command on a multiplexed connection.
    reader: Conn,
    scripts: Scripts,
    /// `{name}`: the hash tag every key starts with.
    prefix: String,
    settings: QueueSettings,
    last_takeover: Mutex<Instant>,
}

fn unavailable(e: RedisError) -> QueueError {
    QueueError::Unavailable(e.to_string())
}

fn corrupt(what: impl std::fmt::Display) -> QueueError {
    QueueError::Corrupt(what.to_string())
}

impl RedisQueue {
    /// Connects (failing fast when Redis cannot be reached) and creates the
    /// event consumer group.
    pub async fn connect(config: &RedisConfig, settings: QueueSettings) -> Result<Self, QueueError> {
        let conn = Conn::open(config, Duration::from_secs(5)).await?;
        // Blocking reads wait up to a second; give them room.
        let reader = Conn::open(config, Duration::from_secs(10)).await?;
        let queue = Self {
            conn,
            reader,
            scripts: Scripts::new(),
            prefix: format!("{{{}}}", config.prefix),
            settings,
            last_takeover: Mutex::new(Instant::now()),
        };
        queue.ensure_group().await?;
        Ok(queue)
    }

    /// The deployment's shared response cache, on this queue's connection.
    pub fn response_cache(&self, ttl: Duration) -> RedisCache {
        RedisCache { conn: self.conn.clone(), prefix: self.prefix.clone(), ttl }
    }

    /// The deployment's event relay between API hosts (pub/sub on the
    /// first node of `config`).
    pub fn relay(&self, config: &RedisConfig) -> Option<RedisRelay> {
        let url = config.urls.first()?.clone();
        Some(RedisRelay { conn: self.conn.clone(), url, channel: self.key("events") })
    }

    /// The deployment's uploaded plugins, on this queue's connection.
    pub fn plugins(&self) -> RedisPlugins {
        RedisPlugins { conn: self.conn.clone(), prefix: self.prefix.clone() }
    }

    /// The deployment's model endpoint limits, up to `max` per endpoint.
    pub fn endpoints(&self, max: u32) -> RedisEndpoints {
        RedisEndpoints { conn: self.conn.clone(), prefix: self.prefix.clone(), script: script!("endpoints"), max }
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.prefix)
    }

    fn xkey(&self, id: Uuid, suffix: &str) -> String {
        format!("{}:x:{id}{suffix}", self.prefix)
    }

    async fn ensure_group(&self) -> Result<(), QueueError> {
        let created: Result<(), RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.key("events"))
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.conn.clone())
            .await;
        match created {
            Err(e) if !e.to_string().contains("BUSYGROUP") => Err(unavailable(e)),
            _ => Ok(()),
        }
    }

    /// Every script call starts with the prefix and routes by `key`.
    fn invoke<'a>(&self, script: &'a Script, key: &str) -> redis::ScriptInvocation<'a> {
        let mut invocation = script.prepare_invoke();
        invocation.key(self.key(key)).arg(&self.prefix);
        invocation
    }

    async fn lease_call(&self, script: &Script, lease: &LeaseId, extra: &[&str]) -> Result<String, QueueError> {
        let mut call = self.invoke(script, "leases");
        call.arg(lease.token).arg(lease.execution_id.to_string()).arg(lease.test_case_id);
        for arg in extra {
            call.arg(*arg);
        }
        call.invoke_async(&mut self.conn.clone()).await.map_err(unavailable)
    }

    /// Hands over events another host left unacknowledged for too long.
    async fn take_over_stuck_events(&self, consumer: &str, max: usize) -> Result<Vec<Delivery>, QueueError> {
        {
            let mut last = self.last_takeover.lock().unwrap_or_else(PoisonError::into_inner);
            if last.elapsed() < EVENT_TAKEOVER / 6 {
                return Ok(Vec::new());
            }
            *last = Instant::now();
        }
        let reply: redis::streams::StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(self.key("events"))
            .arg(GROUP)
            .arg(consumer)
            .arg(EVENT_TAKEOVER.as_millis() as u64)
            .arg("0-0")
            .arg("COUNT")
            .arg(max)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        self.parse_entries(reply.claimed).await
    }

    async fn parse_entries(&self, entries: Vec<redis::streams::StreamId>) -> Result<Vec<Delivery>, QueueError> {
        let mut out = Vec::with_capacity(entries.len());
        let mut unreadable = Vec::new();
        for entry in entries {
            match parse_event(&entry) {
                Ok(event) => {
                    // A stream id is `<unix ms>-<sequence>`.
                    let at_ms = entry.id.split('-').next().and_then(|ms| ms.parse().ok()).unwrap_or_else(now_ms);
                    out.push(Delivery { id: entry.id, event, at_ms })
                }
                Err(e) => {
                    tracing::error!(id = %entry.id, error = %e, "unreadable queue event dropped");
                    unreadable.push(entry.id);
                }
            }
        }
        if !unreadable.is_empty() {
            self.ack(&unreadable).await?;
        }
        Ok(out)
    }
}

fn field(entry: &redis::streams::StreamId, name: &str) -> Result<String, QueueError> {
    match entry.map.get(name) {
        Some(Value::BulkString(b)) => String::from_utf8(b.clone()).map_err(corrupt),
        Some(Value::SimpleString(s)) => Ok(s.clone()),
        _ => Err(corrupt(format!("event without field `{name}`"))),
    }
}

#[derive(Deserialize)]
struct StartedData {
    execution_id: Uuid,
}

#[derive(Deserialize)]
struct UnrunData {
    execution_id: Uuid,
    status: TestStatus,
    reason: String,
    tests: Vec<UnrunTest>,
}

#[derive(Deserialize)]
struct FinishedData {
    execution_id: Uuid,
    status: ExecutionStatus,
    summary: ResultSummary,
}

fn parse_event(entry: &redis::streams::StreamId) -> Result<QueueEvent, QueueError> {
    let data = field(entry, "d")?;
    let json = |e: serde_json::Error| corrupt(format!("event {}: {e}", entry.id));
    Ok(match field(entry, "k")?.as_str() {
        "started" => {
            let d: StartedData = serde_json::from_str(&data).map_err(json)?;
            QueueEvent::Started { execution_id: d.execution_id }
        }
        "settled" => QueueEvent::Settled { result: Box::new(serde_json::from_str(&data).map_err(json)?) },
        "unrun" => {
            let d: UnrunData = serde_json::from_str(&data).map_err(json)?;
            QueueEvent::Unrun { execution_id: d.execution_id, status: d.status, reason: d.reason, tests: d.tests }
        }
        "finished" => {
            let d: FinishedData = serde_json::from_str(&data).map_err(json)?;
            QueueEvent::Finished { execution_id: d.execution_id, status: d.status, summary: d.summary }
        }
        other => return Err(corrupt(format!("unknown event kind `{other}`"))),
    })
}

fn summary_fields(s: &ResultSummary) -> [u64; 8] {
    [
        s.total_tests as u64,
        s.passed_tests as u64,
        s.failed_tests as u64,
        s.error_tests as u64,
        s.skipped_tests as u64,
        s.cancelled_tests as u64,
        s.flaky_tests as u64,
        s.total_execution_time,
    ]
}

fn live_from(id: Uuid, h: &HashMap<String, String>, waiting: u64) -> LiveExecution {
    let n = |k: &str| h.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let mut summary = ResultSummary::default();
    // Rebuilt through `add_unrun` so the derived figures match the
    // in-memory backend's; then the time is set.
    for (status, field) in [
        (TestStatus::Passed, "passed"),
        (TestStatus::Failed, "failed"),
        (TestStatus::Error, "error"),
        (TestStatus::Skipped, "skipped"),
        (TestStatus::Cancelled, "cancelled"),
    ] {
        for _ in 0..n(field) {
            summary.add_unrun(status);
        }
    }
    summary.flaky_tests = n("flaky") as usize;
    summary.total_execution_time = n("time");
    let ran = summary.total_tests.saturating_sub(summary.skipped_tests + summary.cancelled_tests);
    summary.average_execution_time = if ran == 0 { 0.0 } else { summary.total_execution_time as f64 / ran as f64 };
    LiveExecution {
        execution_id: id,
        priority: u8::try_from(n("prio")).unwrap_or(0),
        total_tests: u32::try_from(n("total")).unwrap_or(u32::MAX),
        summary,
        running: u32::try_from(n("running")).unwrap_or(0),
        waiting: u32::try_from(waiting).unwrap_or(u32::MAX),
        halt: h.get("halt").and_then(|s| Halt::parse(s)),
        started_at_ms: h.get("started").and_then(|v| v.parse().ok()),
    }
}

#[async_trait::async_trait]
impl Queue for RedisQueue {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn enqueue(&self, entry: ExecutionEntry, jobs: Vec<Job>) -> Result<bool, QueueError> {
        let mut payloads = Vec::with_capacity(jobs.len());
        for job in &jobs {
            payloads.push((job.test_case_id, serde_json::to_string(job).map_err(corrupt)?));
        }
        let mut chunks = payloads.chunks(ENQUEUE_CHUNK);
        let first = chunks.next().unwrap_or(&[]);
        let mut call = self.invoke(&self.scripts.enqueue, "ready");
        call.arg("create")
            .arg(entry.execution_id.to_string())
            .arg(entry.priority)
            .arg(entry.max_concurrent_tests.max(1))
            .arg(entry.total_tests);
        for n in summary_fields(&entry.already_settled) {
            call.arg(n);
        }
        call.arg(entry.tenant_id.map_or_else(String::new, |t| t.to_string()));
        for (id, payload) in first {
            call.arg(*id).arg(payload);
        }
        let created: i64 = call.invoke_async(&mut self.conn.clone()).await.map_err(unavailable)?;
        if created == 0 {
            return Ok(false);
        }
        for chunk in chunks {
            let mut call = self.invoke(&self.scripts.enqueue, "ready");
            call.arg("append").arg(entry.execution_id.to_string()).arg(0).arg(0).arg(0);
            for _ in 0..8 {
                call.arg(0);
            }
            call.arg("");
            for (id, payload) in chunk {
                call.arg(*id).arg(payload);
            }
            let _: i64 = call.invoke_async(&mut self.conn.clone()).await.map_err(unavailable)?;
        }
        Ok(true)
    }

    async fn claim_with(&self, _worker: &str, request: &ClaimRequest) -> Result<Vec<Lease>, QueueError> {
        let mut call = self.invoke(&self.scripts.claim, "ready");
        call.arg(now_ms())
            .arg(self.settings.lease.as_millis() as u64)
            .arg(request.max)
            .arg(request.share_cap.unwrap_or(0))
            .arg(self.settings.priority_aging.map_or(0, |d| d.as_millis() as u64))
            .arg(request.min_priority)
            .arg(request.tenant_cap.unwrap_or(0));
        for (id, n) in &request.held {
            call.arg(id.to_string()).arg(*n);
        }
        let flat: Vec<(u64, String)> = call.invoke_async(&mut self.conn.clone()).await.map_err(unavailable)?;
        flat.into_iter()
            .map(|(token, payload)| {
                let job: Job = serde_json::from_str(&payload).map_err(|e| corrupt(format!("job payload: {e}")))?;
                Ok(Lease { job, token })
            })
            .collect()
    }

    async fn set_admission(&self, worker: &str, hold: Option<&Hold>) -> Result<(), QueueError> {
        let record = Admission { hold: hold.cloned(), until: now_ms() + self.settings.lease.as_millis() as u64 };
        let json = serde_json::to_string(&record).map_err(|e| corrupt(format!("admission: {e}")))?;
        redis::cmd("HSET")
            .arg(self.key("admission"))
            .arg(worker)
            .arg(json)
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(unavailable)
    }

    async fn admissions(&self) -> Result<Vec<Option<Hold>>, QueueError> {
        let all: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(self.key("admission"))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        let now = now_ms();
        let mut live = Vec::new();
        let mut expired = Vec::new();
        for (worker, json) in all {
            match serde_json::from_str::<Admission>(&json) {
                Ok(a) if a.until > now => live.push(a.hold),
                _ => expired.push(worker),
            }
        }
        if !expired.is_empty() {
            // Workers that stopped reporting: forget them (best effort).
            let _ = redis::cmd("HDEL")
                .arg(self.key("admission"))
                .arg(&expired)
                .query_async::<()>(&mut self.conn.clone())
                .await;
        }
        Ok(live)
    }

    async fn heartbeat(&self, worker: &str, tokens: &[u64]) -> Result<Vec<LeaseState>, QueueError> {
        let mut call = self.invoke(&self.scripts.heartbeat, "leases");
        call.arg(now_ms()).arg(self.settings.lease.as_millis() as u64).arg(worker);
        for token in tokens {
            call.arg(*token);
        }
        let states: Vec<String> = call.invoke_async(&mut self.conn.clone()).await.map_err(unavailable)?;
        Ok(states
            .iter()
            .map(|s| match s.as_str() {
                "held" => LeaseState::Held,
                other => Halt::parse(other).map_or(LeaseState::Lost, LeaseState::Halted),
            })
            .collect())
    }

    async fn finish(
        &self,
        lease: &LeaseId,
        result: &TestResult,
        halt_on_failure: bool,
    ) -> Result<Finished, QueueError> {
        let payload = serde_json::to_string(result).map_err(corrupt)?;
        let time = result.execution_time_ms.to_string();
        let reply = self
            .lease_call(
                &self.scripts.finish,
                lease,
                &[
                    result.status.as_str(),
                    &time,
                    if result.flaky { "1" } else { "0" },
                    if halt_on_failure { "1" } else { "0" },
                    &payload,
                ],
            )
            .await?;
        Ok(match reply.as_str() {
            "recorded" => Finished::Recorded { halted: false },
            "halted" => Finished::Recorded { halted: true },
            "duplicate" => Finished::Duplicate,
            _ => Finished::Stale,
        })
    }

    async fn retry(&self, lease: &LeaseId, job: Job) -> Result<Retried, QueueError> {
        let payload = serde_json::to_string(&job).map_err(corrupt)?;
        let reply = self.lease_call(&self.scripts.retry, lease, &[&payload]).await?;
        Ok(match reply.as_str() {
            "requeued" => Retried::Requeued,
            "halted" => Retried::Halted,
            _ => Retried::Stale,
        })
    }

    async fn halt(&self, execution_id: Uuid, halt: Halt) -> Result<bool, QueueError> {
        let mut call = self.invoke(&self.scripts.halt, "ready");
        call.arg(execution_id.to_string()).arg(halt.as_str());
        let held: i64 = call.invoke_async(&mut self.conn.clone()).await.map_err(unavailable)?;
        Ok(held == 1)
    }

    async fn reap(&self) -> Result<u64, QueueError> {
        let mut call = self.invoke(&self.scripts.reap, "leases");
        call.arg(now_ms()).arg(self.settings.max_deliveries).arg(REAP_BATCH);
        call.invoke_async(&mut self.conn.clone()).await.map_err(unavailable)
    }

    async fn read_events(&self, consumer: &str, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        let taken_over = self.take_over_stuck_events(consumer, max).await?;
        if !taken_over.is_empty() {
            return Ok(taken_over);
        }
        let reply: Result<Option<redis::streams::StreamReadReply>, RedisError> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(max.max(1))
            .arg("BLOCK")
            .arg(wait.as_millis().max(1) as u64)
            .arg("STREAMS")
            .arg(self.key("events"))
            .arg(">")
            .query_async(&mut self.reader.clone())
            .await;
        let reply = match reply {
            Ok(reply) => reply,
            // The stream and its group are gone (Redis lost its data).
            Err(e) if e.to_string().contains("NOGROUP") => {
                self.ensure_group().await?;
                return Ok(Vec::new());
            }
            Err(e) => return Err(unavailable(e)),
        };
        let entries = reply.map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect()).unwrap_or_default();
        self.parse_entries(entries).await
    }

    async fn ack(&self, ids: &[String]) -> Result<(), QueueError> {
        if ids.is_empty() {
            return Ok(());
        }
        let key = self.key("events");
        let mut pipe = redis::pipe();
        pipe.cmd("XACK").arg(&key).arg(GROUP).arg(ids).ignore();
        pipe.cmd("XDEL").arg(&key).arg(ids).ignore();
        pipe.query_async::<()>(&mut self.conn.clone()).await.map_err(unavailable)
    }

    async fn execution(&self, execution_id: Uuid) -> Result<Option<LiveExecution>, QueueError> {
        let (h, waiting): (HashMap<String, String>, u64) = redis::pipe()
            .hgetall(self.xkey(execution_id, ""))
            .llen(self.xkey(execution_id, ":q"))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok((!h.is_empty()).then(|| live_from(execution_id, &h, waiting)))
    }

    async fn executions(&self) -> Result<Vec<LiveExecution>, QueueError> {
        let ids: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.key("live"))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let Ok(id) = Uuid::parse_str(&id) else { continue };
            if let Some(live) = self.execution(id).await? {
                out.push(live);
            }
        }
        Ok(out)
    }

    async fn counts(&self) -> Result<QueueCounts, QueueError> {
        let (active, reaped, workers): (u64, Option<u64>, u64) = redis::pipe()
            .zcard(self.key("leases"))
            .hget(self.key("stats"), "reaped")
            .zcount(self.key("workers"), now_ms(), "+inf")
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        let groups: Vec<HashMap<String, Value>> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(self.key("events"))
            .query_async(&mut self.conn.clone())
            .await
            .unwrap_or_default();
        let event_lag = groups
            .iter()
            .map(|g| {
                let number = |k: &str| g.get(k).and_then(|v| redis::from_redis_value_ref::<u64>(v).ok()).unwrap_or(0);
                number("lag") + number("pending")
            })
            .sum();
        let executions = self.executions().await?;
        let mut counts = QueueCounts {
            active,
            executions: executions.len() as u64,
            reaped: reaped.unwrap_or(0),
            workers,
            event_lag,
            ..QueueCounts::default()
        };
        for e in &executions {
            counts.waiting += u64::from(e.waiting);
            counts.waiting_by_class[QueueCounts::class_index(e.priority)] += u64::from(e.waiting);
        }
        Ok(counts)
    }

    async fn epoch_intact(&self) -> Result<bool, QueueError> {
        redis::cmd("EXISTS").arg(self.key("epoch")).query_async(&mut self.conn.clone()).await.map_err(unavailable)
    }

    async fn mark_epoch(&self) -> Result<(), QueueError> {
        redis::cmd("SET").arg(self.key("epoch")).arg(1).query_async(&mut self.conn.clone()).await.map_err(unavailable)
    }
}
