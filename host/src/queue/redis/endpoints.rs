//! Model endpoint limits kept in Redis for every process of a deployment
//! (`scripts/endpoints.lua`; the local side is `sandbox/endpoints.rs`).

use redis::Script;

use super::conn::Conn;
use crate::queue::now_ms;
use crate::sandbox::endpoints::{
    DECREASE_GAP, DeploymentLimits, EndpointReport, SharedEndpoints, SharedEndpointsError,
};

pub struct RedisEndpoints {
    pub(super) conn: Conn,
    pub(super) prefix: String,
    pub(super) script: Script,
    /// `MODEL_ENDPOINT_MAX_CONCURRENCY` for the whole deployment.
    pub(super) max: u32,
}

#[async_trait::async_trait]
impl SharedEndpoints for RedisEndpoints {
    async fn sync(&self, reports: &[EndpointReport]) -> Result<DeploymentLimits, SharedEndpointsError> {
        let mut call = self.script.prepare_invoke();
        call.key(format!("{}:endpoints", self.prefix))
            .arg(&self.prefix)
            .arg(now_ms())
            .arg(DECREASE_GAP.as_millis() as u64)
            .arg(self.max);
        for r in reports {
            call.arg(&r.endpoint).arg(r.successes).arg(r.pushed_back_in_flight.unwrap_or(0));
        }
        let (processes, pairs): (u32, Vec<(String, String)>) = {
            let flat: Vec<redis::Value> =
                call.invoke_async(&mut self.conn.clone()).await.map_err(|e| SharedEndpointsError(e.to_string()))?;
            let mut items = flat.into_iter();
            let processes: u32 = items
                .next()
                .and_then(|v| redis::from_redis_value(v).ok())
                .ok_or_else(|| SharedEndpointsError("no process count in the reply".into()))?;
            let rest: Vec<String> = items.filter_map(|v| redis::from_redis_value(v).ok()).collect();
            (processes, rest.chunks_exact(2).map(|p| (p[0].clone(), p[1].clone())).collect())
        };
        let limits = pairs.into_iter().filter_map(|(name, d)| Some((name, d.parse::<f64>().ok()?))).collect();
        Ok(DeploymentLimits { limits, processes })
    }
}
