# slurm: the resumable stop (SIGUSR1/SIGTERM -> exit 75 on every rank -> resume) and the Slurm
# scripts in slurm/ run against a real one-node cluster (munged, slurmctld, slurmd started by each
# test under its scratch folder and stopped by their PIDs). docs/slurm.md describes them.
add_executable(qr_test_ckpt_same slurm/ckpt_same.c)
target_link_libraries(qr_test_ckpt_same PRIVATE qr_io)

qr_add_mpi_test(NAME slurm.stop_agree.np3 NP 3 SOURCES slurm/stop_agree.c LIBS qr_jobs)

# slurm.stop needs no cluster; the others start one each and run one at a time (one node, 2 cores).
qr_add_script_test(NAME slurm.stop SCRIPT slurm/stop.sh ARGS $<TARGET_FILE:qr_test_ckpt_same>
                   TIMEOUT 300)
foreach(case pipeline requeue sweep launch_fail)
  qr_add_script_test(NAME slurm.${case} SCRIPT slurm/${case}.sh
                     ARGS $<TARGET_FILE:qr_test_ckpt_same> TIMEOUT 400)
  set_tests_properties(slurm.${case} PROPERTIES RUN_SERIAL TRUE)
endforeach()
