//! `isobench-agent`: runs one workload inside an environment and reports in
//! frames. See [`isobench::agent`].

fn main() {
    isobench::agent::main()
}
