# progress.*: what a user sees of a long job: the ETA against the real remaining time on uneven
# modules, and the live bar in a real terminal (tmux) under mpiexec at 60 and 120 columns.
qr_add_script_test(NAME progress.eta SCRIPT progress/eta.sh TIMEOUT 180)
qr_add_script_test(NAME progress.bar_tmux SCRIPT progress/bar_tmux.sh TIMEOUT 180)
