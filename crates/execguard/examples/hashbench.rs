//! Hash throughput: `sha2` (what warden uses) against `ring`, same buffer, same process.
use std::time::Instant;
fn main() {
    let mb: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(512);
    let buf: Vec<u8> = (0..mb << 20).map(|i| (i * 31 % 251) as u8).collect();
    let gbps = |secs: f64| (mb as f64 / 1024.0) / secs;
    let t = Instant::now();
    let a = warden_execguard::identity::sha256_bytes(&buf);
    let s1 = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let b = ring::digest::digest(&ring::digest::SHA256, &buf);
    let s2 = t.elapsed().as_secs_f64();
    assert_eq!(&a[..], b.as_ref());
    println!("sha2  {:.2} GB/s (one core)", gbps(s1));
    println!("ring  {:.2} GB/s (one core)", gbps(s2));
    println!("sha2/ring ratio {:.2}", s2 / s1);
}
