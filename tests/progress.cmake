# progress.*: what a user sees of a long job: the ETA against the real remaining time on uneven
# modules, and the live bar in a real terminal (tmux) under mpiexec at 60 and 120 columns.
qr_add_script_test(NAME progress.eta SCRIPT progress/eta.sh TIMEOUT 180)
# A timing check: alone (other tests' load would change the remaining time under it), and in the
# release build only (AddressSanitizer slows our code and not OpenBLAS, so the costs shift).
set_tests_properties(progress.eta PROPERTIES RUN_SERIAL TRUE LABELS no-sanitizer)
qr_add_script_test(NAME progress.bar_tmux SCRIPT progress/bar_tmux.sh TIMEOUT 180)
