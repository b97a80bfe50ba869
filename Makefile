# One command for every local check: `make verify` runs exactly what CI runs.
.PHONY: verify test bench-rpc bench-actors fmt

verify:
	bash .ci/run

test:
	cargo test --workspace --locked

fmt:
	cargo fmt --all

# The transport benchmark recorded in BENCHMARKS.md.
bench-rpc:
	cargo run --release --locked -p troupe-core --bin troupe-rpc-peer -- bench --seconds 3 --rounds 5

bench-actors:
	cargo run --release --locked -p troupe-examples --bin troupe-actors -- bench
