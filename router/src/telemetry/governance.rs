//! Metrics of the audit chain, of policy reloads and of what the policy could not test.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

pub mod names {
    pub const AUDIT_CHAINED: &str = "tollgate_audit_chained_total";
    pub const AUDIT_CHAIN_PARTITIONS: &str = "tollgate_audit_chain_partitions";
    pub const AUDIT_INTAKE_PARTITIONS: &str = "tollgate_audit_intake_partitions";
    pub const AUDIT_HANDED: &str = "tollgate_audit_handed_total";
    pub const AUDIT_HAND_OFF_BEHIND: &str = "tollgate_audit_hand_off_behind_total";
    pub const AUDIT_INTAKE_REJECTED: &str = "tollgate_audit_intake_rejected_total";
    pub const AUDIT_TRANSACTIONS: &str = "tollgate_audit_transactions_total";
    pub const POLICY_RELOADS: &str = "tollgate_policy_reloads_total";
    pub const POLICY_BOUND_NOT_NUMERIC: &str = "tollgate_policy_bound_not_numeric_total";
}

#[derive(Clone)]
pub(super) struct GovernanceMetrics {
    pub chained: IntCounter,
    pub chain_partitions: IntGauge,
    pub intake_partitions: IntGauge,
    pub handed: IntCounter,
    pub behind: IntCounter,
    pub intake_rejected: IntCounter,
    pub transactions: IntCounterVec,
    pub reloads: IntCounterVec,
    pub not_numeric: IntCounterVec,
}

impl GovernanceMetrics {
    pub fn new(registry: &Registry) -> Self {
        let m = GovernanceMetrics {
            chained: IntCounter::new(names::AUDIT_CHAINED, "Audit records linked into the hash chain.").unwrap(),
            chain_partitions: IntGauge::new(
                names::AUDIT_CHAIN_PARTITIONS,
                "Audit intake partitions this process's chainer holds: 0 while it joins its group or after a rebalance took them. Their audit records are chained by no one while no chainer holds them.",
            )
            .unwrap(),
            intake_partitions: IntGauge::new(
                names::AUDIT_INTAKE_PARTITIONS,
                "Partitions of the audit intake topic, as this process's chainer's client knows them (from its statistics): what the chainers of all routers together should hold.",
            )
            .unwrap(),
            handed: IntCounter::new(
                names::AUDIT_HANDED,
                "Audit records of the routing loops and the review join chained in process, without the intake topic's round trip (of tollgate_audit_chained_total).",
            )
            .unwrap(),
            behind: IntCounter::new(
                names::AUDIT_HAND_OFF_BEHIND,
                "Audit records sent through the intake topic although this process's chainer held their partition, because it held more than its bound of handed records not yet chained and had chained none for processing.hand_off_stall (it was behind).",
            )
            .unwrap(),
            intake_rejected: IntCounter::new(
                names::AUDIT_INTAKE_REJECTED,
                "Audit intake records that were not audit records (dead-lettered).",
            )
            .unwrap(),
            transactions: IntCounterVec::new(
                Opts::new(names::AUDIT_TRANSACTIONS, "Audit chain transactions, by result: committed or aborted."),
                &["result"],
            )
            .unwrap(),
            reloads: IntCounterVec::new(
                Opts::new(names::POLICY_RELOADS, "Policy reloads, by result: applied, refused (invalid) or unchanged."),
                &["result"],
            )
            .unwrap(),
            not_numeric: IntCounterVec::new(
                Opts::new(
                    names::POLICY_BOUND_NOT_NUMERIC,
                    "Events whose policy decision tested a bound on a field holding something other than a number (the bound was false), by field.",
                ),
                &["field"],
            )
            .unwrap(),
        };
        for result in ["committed", "aborted"] {
            m.transactions.with_label_values(&[result]);
        }
        for result in ["applied", "refused"] {
            m.reloads.with_label_values(&[result]);
        }
        for c in [
            Box::new(m.chained.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.chain_partitions.clone()),
            Box::new(m.intake_partitions.clone()),
            Box::new(m.handed.clone()),
            Box::new(m.behind.clone()),
            Box::new(m.intake_rejected.clone()),
            Box::new(m.transactions.clone()),
            Box::new(m.reloads.clone()),
            Box::new(m.not_numeric.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        m
    }
}
