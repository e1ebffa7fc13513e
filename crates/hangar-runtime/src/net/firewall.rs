//! The node's nftables rules for sandbox networking, built as a typed `nft -j` document with
//! the `nftables` crate (schema: libnftables-json(5)) and applied in one transaction.
//!
//! Two tables, both named [`NetworkConfig::table_name`] and owned by hangar (replaced whole
//! on every apply, deleted with the bridge):
//! ```text
//! table inet hangar_<bridge>
//!   chain postrouting  (nat, srcnat)   ip saddr <subnet> oifname != <bridge> masquerade
//!   chain forward      (filter)        iifname <bridge> oifname <bridge> drop      sandbox -> sandbox
//!                                      iifname <bridge> ip saddr != <subnet> drop   spoofed source
//!                                      iifname <bridge> ip daddr <dns> th dport 53 accept
//!                                      iifname <bridge> ip daddr { deny } drop     metadata, ...
//!                                      iifname <bridge> meta nfproto ipv4 accept    out to the world
//!                                      iifname <bridge> drop                        (IPv6, rest)
//!                                      oifname <bridge> ct state established,related accept
//!                                      oifname <bridge> drop                        nothing opens in
//!   chain input        (filter)        iifname <bridge> ct state established,related accept
//!                                      iifname <bridge> drop                        the host itself
//! table bridge hangar_<bridge>
//!   chain forward      (filter)        iifname "hgv*" drop                          port -> port
//! ```
//! Chains accept by default, so traffic that is not the sandboxes' is untouched. Another
//! table that drops forwarded traffic (Docker's `FORWARD` policy) still applies: every base
//! chain on a hook must accept a packet.

use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;

use nftables::batch::Batch;
use nftables::expr::{
    Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix, SetItem, CT,
};
use nftables::schema::{Chain, NfListObject, Nftables, Rule, Table};
use nftables::stmt::{Match, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use tokio::process::Command;

use super::{NetError, NetworkConfig};
use crate::process::run_with_deadline;

const NAT_PRIORITY: i32 = 100; // srcnat
const FILTER_PRIORITY: i32 = 0; // filter

fn s(v: impl Into<String>) -> Expression<'static> {
    Expression::String(Cow::Owned(v.into()))
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn ip_field(field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: Cow::Borrowed("ip"),
            field: Cow::Borrowed(field),
        },
    )))
}

fn prefix(net: ipnet::Ipv4Net) -> Expression<'static> {
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(s(net.network().to_string())),
        len: u32::from(net.prefix_len()),
    }))
}

fn set(items: Vec<Expression<'static>>) -> Expression<'static> {
    Expression::Named(NamedExpression::Set(
        items.into_iter().map(SetItem::Element).collect(),
    ))
}

fn established() -> Statement<'static> {
    m(
        Expression::Named(NamedExpression::CT(CT {
            key: Cow::Borrowed("state"),
            family: None,
            dir: None,
        })),
        Operator::IN,
        Expression::List(vec![s("established"), s("related")]),
    )
}

fn m(left: Expression<'static>, op: Operator, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match { left, right, op })
}

fn base_chain(
    family: NfFamily,
    table: &str,
    name: &'static str,
    typ: NfChainType,
    hook: NfHook,
    prio: i32,
) -> NfListObject<'static> {
    NfListObject::Chain(Chain {
        family,
        table: Cow::Owned(table.to_owned()),
        name: Cow::Borrowed(name),
        _type: Some(typ),
        hook: Some(hook),
        prio: Some(prio),
        policy: Some(NfChainPolicy::Accept),
        ..Chain::default()
    })
}

fn rule(
    family: NfFamily,
    table: &str,
    chain: &'static str,
    expr: Vec<Statement<'static>>,
) -> NfListObject<'static> {
    NfListObject::Rule(Rule {
        family,
        table: Cow::Owned(table.to_owned()),
        chain: Cow::Borrowed(chain),
        expr: Cow::Owned(expr),
        ..Rule::default()
    })
}

fn table(family: NfFamily, name: &str) -> NfListObject<'static> {
    NfListObject::Table(Table {
        family,
        name: Cow::Owned(name.to_owned()),
        handle: None,
    })
}

/// The complete ruleset for `config`, as one batch that replaces hangar's tables atomically:
/// `add` (so `delete` cannot fail on a first run), `delete`, then the tables, chains and
/// rules above.
pub fn ruleset(config: &NetworkConfig) -> Nftables<'static> {
    let name = config.table_name();
    let br = config.bridge.as_str();
    let mut batch = Batch::new();
    for family in [NfFamily::INet, NfFamily::Bridge] {
        batch.add(table(family, &name));
        batch.delete(table(family, &name));
        batch.add(table(family, &name));
    }
    let inet = NfFamily::INet;
    let iif = || m(meta(MetaKey::Iifname), Operator::EQ, s(br));
    let oif = || m(meta(MetaKey::Oifname), Operator::EQ, s(br));

    batch.add(base_chain(
        inet,
        &name,
        "postrouting",
        NfChainType::NAT,
        NfHook::Postrouting,
        NAT_PRIORITY,
    ));
    batch.add(rule(
        inet,
        &name,
        "postrouting",
        vec![
            m(ip_field("saddr"), Operator::EQ, prefix(config.subnet)),
            m(meta(MetaKey::Oifname), Operator::NEQ, s(br)),
            Statement::Masquerade(None),
        ],
    ));

    batch.add(base_chain(
        inet,
        &name,
        "forward",
        NfChainType::Filter,
        NfHook::Forward,
        FILTER_PRIORITY,
    ));
    let fwd = |expr| rule(inet, &name, "forward", expr);
    batch.add(fwd(vec![iif(), oif(), Statement::Drop(None)]));
    batch.add(fwd(vec![
        iif(),
        m(ip_field("saddr"), Operator::NEQ, prefix(config.subnet)),
        Statement::Drop(None),
    ]));
    if !config.dns.is_empty() {
        batch.add(fwd(vec![
            iif(),
            m(
                ip_field("daddr"),
                Operator::EQ,
                set(config.dns.iter().map(|a| s(a.to_string())).collect()),
            ),
            m(
                meta(MetaKey::L4proto),
                Operator::EQ,
                set(vec![s("tcp"), s("udp")]),
            ),
            m(
                Expression::Named(NamedExpression::Payload(Payload::PayloadField(
                    PayloadField {
                        protocol: Cow::Borrowed("th"),
                        field: Cow::Borrowed("dport"),
                    },
                ))),
                Operator::EQ,
                Expression::Number(53),
            ),
            Statement::Accept(None),
        ]));
    }
    if !config.deny.is_empty() {
        batch.add(fwd(vec![
            iif(),
            m(
                ip_field("daddr"),
                Operator::EQ,
                set(config.deny.iter().map(|n| prefix(*n)).collect()),
            ),
            Statement::Drop(None),
        ]));
    }
    batch.add(fwd(vec![
        iif(),
        m(meta(MetaKey::Nfproto), Operator::EQ, s("ipv4")),
        Statement::Accept(None),
    ]));
    batch.add(fwd(vec![iif(), Statement::Drop(None)]));
    batch.add(fwd(vec![oif(), established(), Statement::Accept(None)]));
    batch.add(fwd(vec![oif(), Statement::Drop(None)]));

    batch.add(base_chain(
        inet,
        &name,
        "input",
        NfChainType::Filter,
        NfHook::Input,
        FILTER_PRIORITY,
    ));
    // Answers to connections the host opened are let in; nothing a sandbox opens is.
    batch.add(rule(
        inet,
        &name,
        "input",
        vec![iif(), established(), Statement::Accept(None)],
    ));
    batch.add(rule(
        inet,
        &name,
        "input",
        vec![iif(), Statement::Drop(None)],
    ));

    let bridge = NfFamily::Bridge;
    batch.add(base_chain(
        bridge,
        &name,
        "forward",
        NfChainType::Filter,
        NfHook::Forward,
        FILTER_PRIORITY,
    ));
    batch.add(rule(
        bridge,
        &name,
        "forward",
        // Frames bridged from one sandbox port to another (the routed path is the inet
        // forward chain). By the port-name prefix: the crate spells `meta ibrname` in a way
        // nft 1.0.6 refuses, and every `hgv*` port on any bridge is a sandbox's.
        vec![
            m(
                meta(MetaKey::Iifname),
                Operator::EQ,
                s(format!("{}*", super::VETH_PREFIX)),
            ),
            Statement::Drop(None),
        ],
    ));
    batch.to_nftables()
}

/// Deletes hangar's two tables for `config` (`add` first, so a missing table is no error).
pub fn removal(config: &NetworkConfig) -> Nftables<'static> {
    let name = config.table_name();
    let mut batch = Batch::new();
    for family in [NfFamily::INet, NfFamily::Bridge] {
        batch.add(table(family, &name));
        batch.delete(table(family, &name));
    }
    batch.to_nftables()
}

/// Applies `doc` with `nft -j -f FILE` (one kernel transaction: all or nothing), writing the
/// document to `scratch` first; every run has `deadline`.
pub async fn apply(doc: &Nftables<'_>, scratch: &Path, deadline: Duration) -> Result<(), NetError> {
    let json = serde_json::to_vec(doc).map_err(|e| NetError::Firewall {
        reason: format!("encoding the ruleset: {e}"),
    })?;
    std::fs::write(scratch, json).map_err(|source| NetError::Io {
        op: "write",
        path: scratch.to_owned(),
        source,
    })?;
    let mut cmd = Command::new("nft");
    cmd.arg("-j").arg("-f").arg(scratch);
    let result = run_with_deadline(cmd, deadline).await;
    let _ = std::fs::remove_file(scratch);
    result.map(|_| ()).map_err(|e| NetError::Firewall {
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_names_the_bridge_subnet_and_deny_list() {
        let config = NetworkConfig {
            bridge: "hgt0".into(),
            subnet: "10.77.0.0/16".parse().expect("subnet"),
            dns: vec!["192.0.2.53".parse().expect("dns")],
            deny: vec!["169.254.0.0/16".parse().expect("deny")],
        };
        let json = serde_json::to_value(ruleset(&config)).expect("json");
        let text = json.to_string();
        assert!(text.contains(r#""name":"hangar_hgt0""#), "{text}");
        assert!(text.contains(r#""masquerade""#), "{text}");
        assert!(text.contains(r#""addr":"10.77.0.0","len":16"#), "{text}");
        assert!(text.contains(r#""addr":"169.254.0.0","len":16"#), "{text}");
        assert!(text.contains("192.0.2.53"), "{text}");
        assert!(text.contains(r#""hgv*""#), "{text}");
        // Replaces the tables: add, delete, add for each family, before any chain.
        let cmds: Vec<&str> = json["nftables"]
            .as_array()
            .expect("array")
            .iter()
            .take(6)
            .filter_map(|o| {
                o.as_object()
                    .and_then(|m| m.keys().next())
                    .map(String::as_str)
            })
            .collect();
        assert_eq!(cmds, ["add", "delete", "add", "add", "delete", "add"]);
    }
}
