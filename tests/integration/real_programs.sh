#!/usr/bin/env bash
# Run a real program from the machine twice, plainly and with the drop-in
# library preloaded (no phase is ever started), and check that its output
# (stdout, stderr, exit status and files it writes) is identical, and that
# the preloaded run really bound malloc to the override (ld.so's
# LD_DEBUG=bindings log, written to files so the output is not touched).
# Usage: real_programs.sh cc|python3|sort|git /path/to/libzkalloc_override.so
set -euo pipefail
prog=$1
lib=$2
[ -f "$lib" ] || { echo "no such library: $lib" >&2; exit 1; }
# It must be the drop-in library: the malloc family and zkalloc's API.
# (grep reads a variable: with pipefail, `nm | grep -q` fails whenever grep
# exits before nm has written everything.)
syms=$(nm -D --defined-only "$lib")
for sym in malloc free mallctl zk_begin_phase; do
	grep -qw "$sym" <<<"$syms" ||
		{ echo "FAIL: $lib does not export $sym" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export LC_ALL=C TZ=UTC

# The workload of each program, run in the current directory; everything it
# prints and every file it writes under out/ is compared.
workload() {
	mkdir -p out
	case $prog in
	cc)
		# A compiler run that allocates a lot (cc1's GC heap, obstacks)
		# and forks/execs (cc -> cc1 -> as -> collect2 -> ld).
		cat > prog.c <<-'C'
		#include <stdio.h>
		#include <stdlib.h>
		struct node { struct node *next; long v; };
		static long fold(struct node *n) { long s = 0; for (; n; n = n->next) s = s * 31 + n->v; return s; }
		int main(void) {
			struct node *head = NULL;
			for (long i = 0; i < 100000; i++) {
				struct node *n = malloc(sizeof *n);
				n->v = i % 977; n->next = head; head = n;
			}
			int unused; /* deliberate: a warning on stderr */
			printf("%ld\n", fold(head));
			return 0;
		}
		C
		cc -O2 -Wall -S prog.c -o out/prog.s
		cc -O2 -Wall prog.c -o out/prog
		./out/prog
		;;
	python3)
		# Many small objects, large buffers, threads and a child process.
		cat > work.py <<-'PY'
		import hashlib, subprocess, sys, threading
		h = hashlib.sha256()
		d = {i: str(i) * (i % 17) for i in range(200000)}
		h.update(repr(sorted(d.items())[:1000]).encode())
		big = [bytearray(i * 4096) for i in range(1, 200)]
		h.update(str(sum(len(b) for b in big)).encode())
		res = {}
		def work(k):
		    s = hashlib.sha256()
		    for i in range(20000):
		        s.update((str(k) * (i % 50)).encode())
		    res[k] = s.hexdigest()
		ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]
		[t.start() for t in ts]; [t.join() for t in ts]
		h.update(repr(sorted(res.items())).encode())
		child = subprocess.run([sys.executable, "-c", "print(sum(range(10**6)))"],
		                       capture_output=True, text=True, check=True)
		print(h.hexdigest(), child.stdout.strip())
		PY
		python3 work.py
		;;
	sort)
		# A large file, a small buffer (temporary files) and two threads.
		awk 'BEGIN { for (i = 0; i < 1500000; i++)
			printf "%d %x line-%d\n", (i * 7919) % 1000003, i * 31, i }' > in.txt
		sort -S 8M --parallel=2 -T . in.txt > out/sorted.txt
		sort -n -k1,1 -k2,2 -S 64M in.txt | md5sum
		;;
	git)
		export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@example.org \
			GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@example.org \
			GIT_AUTHOR_DATE='2024-01-01T00:00:00Z' \
			GIT_COMMITTER_DATE='2024-01-01T00:00:00Z' \
			GIT_CONFIG_NOSYSTEM=1 HOME=$PWD
		git init -q -b main repo
		cd repo
		for i in $(seq 1 20); do
			seq 1 $((i * 3000)) | sed "s/^/$i-/" > "f$i.txt"
			git add "f$i.txt"
			git commit -q -m "commit $i"
		done
		git log --format='%H %s' | head -5
		git gc -q --aggressive
		git fsck --strict 2>&1
		git count-objects -v | grep -v size
		git rev-parse HEAD^{tree}
		cd ..
		;;
	*)
		echo "unknown program $prog" >&2
		exit 2
		;;
	esac
}

run() { # dir, preload(0|1)
	mkdir -p "$work/$1"
	(
		cd "$work/$1"
		set +e
		if [ "$2" = 1 ]; then
			LD_PRELOAD=$lib LD_DEBUG=bindings \
				LD_DEBUG_OUTPUT="$work/ld-$1" workload > stdout 2> stderr
		else
			workload > stdout 2> stderr
		fi
		echo "exit $?" > status
	)
}

run plain 0
run preload 1

fail=0
for f in status stdout stderr; do
	if ! cmp -s "$work/plain/$f" "$work/preload/$f"; then
		echo "FAIL: $prog: $f differs with the override preloaded" >&2
		diff "$work/plain/$f" "$work/preload/$f" | head -20 >&2 || true
		fail=1
	fi
done
if ! diff -r "$work/plain/out" "$work/preload/out" > /dev/null; then
	echo "FAIL: $prog: written files differ with the override preloaded" >&2
	fail=1
fi
grep -q '^exit 0$' "$work/plain/status" ||
	{ echo "FAIL: $prog failed even without the override:" >&2
	  head -20 "$work/plain/stderr" >&2; fail=1; }

# Every process of the run (the workload's shell included) binds malloc;
# count those that bound it to the override.
name=$(basename "$lib")
bound=$(grep -l "to $lib \[0\]: normal symbol \`malloc'" "$work"/ld-preload.* 2>/dev/null | wc -l)
total=$(ls "$work"/ld-preload.* 2>/dev/null | wc -l)
if [ "$bound" -eq 0 ]; then
	echo "FAIL: $prog: no process bound malloc to $name" >&2
	fail=1
fi
echo "$prog: $bound of $total processes bound malloc to $name; output identical: $([ $fail = 0 ] && echo yes || echo no)"
head -c 300 "$work/preload/stdout"
exit $fail
