//! Embeds the case corpus (`eval/cases/**/*.toml`) and its helper scripts (`eval/lib/*`) so the
//! binary can run the benchmark without the repository checkout.
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../../eval");
    let mut src = String::new();
    for (name, sub, ext) in [("CASES", "cases", Some("toml")), ("LIB", "lib", None)] {
        let dir = root.join(sub);
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut files = Vec::new();
        walk(&dir, &mut files);
        files.retain(|p| ext.is_none_or(|x| p.extension().is_some_and(|e| e == x)));
        files.sort();
        writeln!(src, "pub static {name}: &[(&str, &str)] = &[").unwrap();
        for f in &files {
            println!("cargo:rerun-if-changed={}", f.display());
            let rel = f.strip_prefix(&root).unwrap().display().to_string();
            let abs = std::fs::canonicalize(f).unwrap();
            writeln!(
                src,
                "    ({rel:?}, include_str!({:?})),",
                abs.display().to_string()
            )
            .unwrap();
        }
        writeln!(src, "];").unwrap();
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("embedded.rs");
    std::fs::write(out, src).unwrap();
}
