.PHONY: test bench bench-quick

test:
	./scripts/test

bench:
	./scripts/bench

bench-quick:
	./scripts/bench --quick
