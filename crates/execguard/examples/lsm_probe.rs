fn main() {
    println!("{:?}", warden_execguard::lsm::probe::probe());
}
