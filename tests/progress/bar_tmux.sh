# progress.bar_tmux: the live bar under mpiexec, as a user sees it. quantize runs with -n 2 and the
# default --progress auto in a real terminal (a detached tmux pane) of 60 and of 120 columns; rank
# 0's stderr is then a pipe to mpiexec, and the bar must go to the terminal all the same. The pane
# is captured every POLL_S seconds while the job runs. Checks, at each width:
#  - a bar was drawn ("quantize [##..] k/7 modules ...") and at least once with a module stage;
#  - no bar line ever wrapped (capture-pane -J joins wrapped lines: none may exceed the width), and
#    no message of rank 0 ran into a bar (they reach the terminal in order with it);
#  - the final screen holds the summary and no bar left over.
# Skips (77) only when tmux is missing.
POLL_S=0.05
command -v tmux >/dev/null || { echo "skip: tmux not installed"; exit 77; }
. "$(dirname "$0")/common.sh"
make_model 1
SOCK="qrecon-test-$$"
trap 'tmux -L "$SOCK" kill-server 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$WORK"' EXIT

run_at() {
    local cols=$1 out="$WORK/w$1" n=0
    mkdir -p "$out"
    cat >"$out/run.sh" <<SH
cd "$WORK" && rm -rf s$cols.h5 s$cols.h5.parts
"$MPIEXEC" -n 2 "$QRECON_BIN" quantize --model m --calib calib --out s$cols.h5 --method srr \
    --rank 16 --group 128
echo "EXIT=\$?"
sleep 60
SH
    tmux -L "$SOCK" -f /dev/null new-session -d -x "$cols" -y 50 -s "w$cols" \
        "env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OPENBLAS_NUM_THREADS=1 bash $out/run.sh" ||
        fail "tmux new-session"
    for _ in $(seq 1 1200); do
        n=$((n + 1))
        tmux -L "$SOCK" capture-pane -p -J -t "w$cols" >"$out/snap.$n" 2>/dev/null || break
        if grep -q '^EXIT=' "$out/snap.$n"; then break; fi
        sleep "$POLL_S"
    done
    tmux -L "$SOCK" capture-pane -p -J -t "w$cols" >"$out/final"
    tmux -L "$SOCK" kill-session -t "w$cols"
    python3 - "$out" "$cols" <<'PY' || fail "bar at $cols columns"
import glob, re, sys
out, cols = sys.argv[1], int(sys.argv[2])
bar = re.compile(r"quantize \[[#.]{6,}\] [0-7]/7 ")
snaps = sorted(glob.glob(out + "/snap.*"), key=lambda p: int(p.rsplit(".", 1)[1]))
bars, staged, longest, glued = 0, 0, 0, 0
for s in snaps:
    for line in open(s).read().splitlines():
        if bar.search(line):
            longest = max(longest, len(line))
            bars += 1
            staged += bool(re.search(r": (statistics|whitening|SVD|quantize|metrics)$", line))
            glued += "qrecon:" in line
final = open(out + "/final").read()
print(f"{cols} columns: {len(snaps)} snapshots, {bars} with a bar, {staged} with a stage, longest bar line {longest}")
ok = True
if bars == 0:
    print("no bar drawn"); ok = False
if staged == 0:
    print("no stage shown within a module"); ok = False
if glued:
    print(f"{glued} time(s) a message ran into the bar"); ok = False
if longest > cols:
    print(f"a line wrapped ({longest} > {cols} columns)"); ok = False
if "EXIT=0" not in final or not re.search(r"^quantize done: 7/7 modules", final, re.M):
    print("no summary / failed run:\n" + final); ok = False
if re.search(r"\[[#.]{6,}\]", final):
    print("a bar was left on the final screen:\n" + final); ok = False
sys.exit(0 if ok else 1)
PY
}

run_at 60
run_at 120
echo "ok"
