//! The `[risk]` section: thresholds and weights of the live risk score (`warden-risk`
//! computes it; the session acts on it). Unset keys keep warden-risk's defaults, which the
//! README documents.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// warden-risk's default weights by signal name (kept equal to
/// `warden_risk::Weights::default()`; a test in warden-risk checks it).
pub const DEFAULT_WEIGHTS: &[(&str, f64)] = &[
    ("evasion", 40.0),
    ("respelled_retry", 20.0),
    ("exec_deny", 10.0),
    ("fail_closed", 5.0),
    ("protected_write", 15.0),
    ("protected_indirect", 40.0),
    ("git_indirection", 40.0),
    ("setuid", 40.0),
    ("credential_probe", 25.0),
    ("net_refusal_new_host", 2.0),
    ("net_refusal_burst", 15.0),
    ("gate_deny", 10.0),
    ("gate_ask", 2.0),
    ("integrity_finding", 15.0),
    ("advisor_deny", 10.0),
    ("claim_tool_failures", 5.0),
    ("claim_subagents", 5.0),
    ("claim_drift", 10.0),
];

/// `[risk]`. Every key is optional; `weights` names signals (`evasion`, `credential_probe`,
/// ... see the README) and sets their points.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskSection {
    /// Compute and act on the score (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn_at: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze_at: Option<f64>,
    /// 0 disables the automatic kill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_at: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub half_life_secs: Option<f64>,
    /// A frozen session nobody thaws is killed after this many seconds (0 or unset: it
    /// stays frozen until a human acts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze_timeout_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub weights: BTreeMap<String, f64>,
}

impl RiskSection {
    pub fn validate(&self) -> Result<(), crate::SectionError> {
        let nums = [
            ("warn_at", self.warn_at),
            ("freeze_at", self.freeze_at),
            ("kill_at", self.kill_at),
            ("half_life_secs", self.half_life_secs),
        ];
        for (k, v) in nums {
            if let Some(v) = v {
                if !v.is_finite() || v < 0.0 {
                    return Err(crate::SectionError::Invalid(format!(
                        "risk.{k} = {v}: must be a finite number >= 0"
                    )));
                }
            }
        }
        if self.half_life_secs == Some(0.0) {
            return Err(crate::SectionError::Invalid(
                "risk.half_life_secs must be > 0".into(),
            ));
        }
        for (k, v) in &self.weights {
            if !v.is_finite() || *v < 0.0 {
                return Err(crate::SectionError::Invalid(format!(
                    "risk.weights.{k} = {v}: must be a finite number >= 0"
                )));
            }
        }
        Ok(())
    }

    pub fn merge(&mut self, over: &RiskSection) {
        macro_rules! take {
            ($($f:ident),*) => {$( if over.$f.is_some() { self.$f = over.$f; } )*};
        }
        take!(
            enabled,
            warn_at,
            freeze_at,
            kill_at,
            half_life_secs,
            freeze_timeout_secs
        );
        for (k, v) in &over.weights {
            self.weights.insert(k.clone(), *v);
        }
    }

    /// A workspace file (agent-writable) may only make the score stricter: it may not switch
    /// it off, raise a threshold above the effective one, lengthen the half-life or the
    /// freeze timeout, or lower a weight. `defaults` gives the effective values where the
    /// base sets none: (warn_at, freeze_at, kill_at, half_life_secs, weight by name).
    pub fn narrow(
        &mut self,
        ws: &RiskSection,
        defaults: (f64, f64, f64, f64),
        default_weight: &dyn Fn(&str) -> Option<f64>,
    ) -> Result<(), crate::Widens> {
        if ws.enabled == Some(false) && self.enabled != Some(false) {
            return Err("risk.enabled".into());
        }
        let lower = |key: &str, base: Option<f64>, dflt: f64, new: Option<f64>| match new {
            Some(n) if n > base.unwrap_or(dflt) => Err(format!("risk.{key}")),
            Some(n) => Ok(Some(n)),
            None => Ok(base),
        };
        let (w, f, k, h) = defaults;
        self.warn_at = lower("warn_at", self.warn_at, w, ws.warn_at)?;
        self.freeze_at = lower("freeze_at", self.freeze_at, f, ws.freeze_at)?;
        // kill_at = 0 means "never": a workspace may not set 0 over a non-zero base.
        if ws.kill_at == Some(0.0) && self.kill_at.unwrap_or(k) != 0.0 {
            return Err("risk.kill_at".into());
        }
        if self.kill_at.unwrap_or(k) == 0.0 && ws.kill_at.is_some_and(|n| n > 0.0) {
            self.kill_at = ws.kill_at;
        } else {
            self.kill_at = lower("kill_at", self.kill_at, k, ws.kill_at)?;
        }
        self.half_life_secs = lower("half_life_secs", self.half_life_secs, h, ws.half_life_secs)?;
        match (self.freeze_timeout_secs, ws.freeze_timeout_secs) {
            (_, None) => {}
            (Some(b), Some(n)) if n > b || n == 0 => return Err("risk.freeze_timeout_secs".into()),
            (None, Some(0)) => {}
            (_, Some(n)) => self.freeze_timeout_secs = Some(n),
        }
        for (name, v) in &ws.weights {
            let base = self
                .weights
                .get(name)
                .copied()
                .or_else(|| default_weight(name));
            match base {
                Some(b) if *v < b => return Err(format!("risk.weights.{name}").into()),
                _ => {
                    self.weights.insert(name.clone(), *v);
                }
            }
        }
        Ok(())
    }
}
