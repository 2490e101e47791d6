# io_safetensors: the safetensors reader and writer (io/safetensors.c). One program, one ctest case
# per group of checks; the malformed files are built byte by byte inside the test.
add_executable(test_io_safetensors io_safetensors/st_test.c)
target_link_libraries(test_io_safetensors PRIVATE qr_test_util qr_io)
foreach(case roundtrip malformed sharded real fuzz)
  add_test(NAME io_safetensors.${case} COMMAND test_io_safetensors ${case})
  set_tests_properties(io_safetensors.${case} PROPERTIES TIMEOUT ${QR_TEST_TIMEOUT} SKIP_RETURN_CODE 77
    ENVIRONMENT "QRECON_TEST_DATA=${QR_TEST_DATA};OPENBLAS_NUM_THREADS=1")
endforeach()

# The real binary on malformed folders: exit 2 and one line naming the file and the problem, on
# every rank. Needs `qrecon inspect` (jobs/cmd_inspect.c).
if(EXISTS ${PROJECT_SOURCE_DIR}/jobs/cmd_inspect.c)
  qr_add_script_test(NAME io_safetensors.inspect_malformed SCRIPT io_safetensors/inspect_malformed.sh)
endif()
