# validate.mpi: mpiexec -n 2 and -n 3 give the same table (every module row) and the same verdict
# as -n 1.
. "$(dirname "$0")/common.sh"
for c in lqer-a8 serq-a4; do
    "$MPIEXEC" -n 1 "$QR" validate "$SCRATCH/$c.h5" --calib "$CALIB" --quiet \
        >"$SCRATCH/mpi-$c-1.txt" || fail "$c: -n 1 failed"
    table_rows "$SCRATCH/mpi-$c-1.txt" >"$SCRATCH/mpi-$c-1.rows"
    [ -s "$SCRATCH/mpi-$c-1.rows" ] || fail "$c: -n 1 printed no table"
    for n in 2 3; do
        "$MPIEXEC" -n $n "$QR" validate "$SCRATCH/$c.h5" --calib "$CALIB" --quiet \
            >"$SCRATCH/mpi-$c-$n.txt" || fail "$c: -n $n failed"
        grep -q "$n rank(s)" "$SCRATCH/mpi-$c-$n.txt" || fail "$c: -n $n did not run on $n ranks"
        table_rows "$SCRATCH/mpi-$c-$n.txt" >"$SCRATCH/mpi-$c-$n.rows"
        cmp -s "$SCRATCH/mpi-$c-1.rows" "$SCRATCH/mpi-$c-$n.rows" || {
            diff "$SCRATCH/mpi-$c-1.rows" "$SCRATCH/mpi-$c-$n.rows" | head
            fail "$c: the table of -n $n differs from -n 1"
        }
        echo "$c: -n $n table identical to -n 1"
    done
done
# a corrupt checkpoint is refused on every rank count: exit 2, its checksum (docs/hardening.md)
bad=$SCRATCH/mpi-corrupt.h5
cp "$SCRATCH/lqer-a8.h5" "$bad"
"$2" "$bad" model.layers.3.mlp.down_proj 11 0x88 >/dev/null || fail "cannot flip a byte"
"$MPIEXEC" -n 3 "$QR" validate "$bad" --calib "$CALIB" --quiet >"$bad.txt" 2>&1
rc=$?
[ $rc -eq 2 ] || fail "corrupt checkpoint under -n 3: exit $rc (expected 2)"
[ "$(grep -c 'error:' "$bad.txt")" -eq 1 ] || fail "-n 3: expected one error line: $(cat "$bad.txt")"
grep -q "model.layers.3.mlp.down_proj" "$bad.txt" || fail "-n 3 does not name the module"
