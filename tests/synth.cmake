# synth: `qrecon synth` and src/synth.c. The program drives the real binary ($QRECON_BIN) and reads
# back what it wrote; synth.chunks tests the generator alone.
add_executable(test_synth synth/synth_test.c)
target_link_libraries(test_synth PRIVATE qr_test_util qr_io)
foreach(case determinism shapes structure options chunks)
  add_test(NAME synth.${case} COMMAND test_synth ${case})
  set_tests_properties(synth.${case} PROPERTIES TIMEOUT ${QR_TEST_TIMEOUT}
    ENVIRONMENT "QRECON_TEST_DATA=${QR_TEST_DATA};QRECON_BIN=$<TARGET_FILE:qrecon>;OPENBLAS_NUM_THREADS=1")
endforeach()
