//! Prints the default Parameters as INF AddReg lines and as the README's Markdown table, from
//! control's defaults: `cargo run -p control --example registry_defaults`.
use control::config::{Config, DWORD_SPECS, MAX_ALLOWED_SOURCES, MAX_SERVICES};

fn main() {
    let c = Config::default();
    let quoted = |v: Vec<String>| {
        v.iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(",")
    };
    let services: Vec<String> = c
        .services
        .as_slice()
        .iter()
        .map(ToString::to_string)
        .collect();
    let sources: Vec<String> = c
        .limits
        .allowed_sources()
        .iter()
        .map(ToString::to_string)
        .collect();
    println!("; --- INF AddReg lines ---");
    println!(
        "HKR,Parameters,Services,0x00010000,{}",
        quoted(services.clone())
    );
    println!(
        "HKR,Parameters,AllowedSources,0x00010000,{}",
        quoted(sources.clone())
    );
    for d in DWORD_SPECS {
        println!(
            "HKR,Parameters,{},0x00010001,{}",
            d.name,
            c.limits.dword(d.name).unwrap()
        );
    }
    println!();
    println!("| Value | Type | Default | Range | Meaning |");
    println!("|---|---|---|---|---|");
    println!(
        "| `Services` | REG_MULTI_SZ | `{}` | up to {MAX_SERVICES} entries `mode,proto,port,address`; mode echo/discard/source/sockperf, proto tcp/udp (source: tcp only), port 1-65535, IPv4 or IPv6 address | listening services |",
        services.join("` `")
    );
    println!(
        "| `AllowedSources` | REG_MULTI_SZ | `{}` | 1 to {MAX_ALLOWED_SOURCES} CIDR prefixes, no host bits | peers served (UDP datagrams and TCP connections); others dropped/refused and counted |",
        sources.join("` `")
    );
    for d in DWORD_SPECS {
        println!(
            "| `{}` | REG_DWORD | {} | {}-{} | {} |",
            d.name, d.default, d.min, d.max, d.doc
        );
    }
}
