# src_dtype: F16 / BF16 / F32 / F64 conversions (src/dtype.c) against references built in the test
# from the IEEE field definitions. One program, one ctest case per argv[1].
add_executable(test_src_dtype src_dtype/dtype_test.c)
target_link_libraries(test_src_dtype PRIVATE qr_test_util)
foreach(case decode encode convert)
  add_test(NAME src_dtype.${case} COMMAND test_src_dtype ${case})
  set_tests_properties(src_dtype.${case} PROPERTIES TIMEOUT ${QR_TEST_TIMEOUT})
endforeach()
