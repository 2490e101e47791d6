# harden: hostile and unlucky inputs (issue 16): crafted shards, non-finite values, outputs that
# would overwrite inputs, untrusted header limits, injected I/O failures. docs/hardening.md.
qr_add_test(NAME harden.shards SOURCES harden/shards.c LIBS qr_io)
foreach(case nocommand nan_weights escape tensor_count outputs identity)
  qr_add_script_test(NAME harden.${case} SCRIPT harden/inputs.sh TIMEOUT 120
                     ARGS ${case} $<TARGET_FILE:qr_test_make_calib>)
endforeach()

# qrecon_fault: qrecon whose main arms the injected I/O failures of io/fault.h from QRECON_FAULT
# (only jobs/main.c is compiled again; the release binary has no way to arm them).
add_executable(qrecon_fault ${PROJECT_SOURCE_DIR}/jobs/main.c)
target_compile_definitions(qrecon_fault PRIVATE QRECON_FAULT_INJECTION)
target_link_libraries(qrecon_fault PRIVATE qr_jobs)
# The sweeps run dozens of MPI jobs: release build only (label no-sanitizer); the real disk-full
# case runs under the sanitizers too.
foreach(case capture quantize validate report export diskfull)
  qr_add_script_test(NAME harden.faults.${case} SCRIPT harden/faults.sh TIMEOUT 600
                     ARGS ${case} $<TARGET_FILE:qrecon_fault> $<TARGET_FILE:qr_test_ckpt_compare>)
  if(NOT case STREQUAL "diskfull")
    set_tests_properties(harden.faults.${case} PROPERTIES LABELS no-sanitizer)
  endif()
endforeach()
add_executable(qr_test_harden_flip harden/flip.c)
target_link_libraries(qr_test_harden_flip PRIVATE qr_io)
qr_add_script_test(NAME harden.checksums SCRIPT harden/checksums.sh TIMEOUT 300
                   ARGS $<TARGET_FILE:qr_test_harden_flip> $<TARGET_FILE:qr_test_ckpt_compare>)
add_executable(qr_test_harden_ckpt_edit harden/ckpt_edit.c)
target_link_libraries(qr_test_harden_ckpt_edit PRIVATE qr_io)
qr_add_script_test(NAME harden.structure SCRIPT harden/structure.sh TIMEOUT 300
                   ARGS $<TARGET_FILE:qr_test_harden_ckpt_edit>)
