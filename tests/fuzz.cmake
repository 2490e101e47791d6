# fuzz: libFuzzer harnesses for the readers of untrusted files (tests/fuzz/), built only with
# -DQRECON_FUZZ=ON and clang. Each runs for QR_FUZZ_SECONDS from the seed corpus in
# tests/fuzz/corpus/<name>/ (new inputs go to a scratch folder, the seeds are not changed), under
# ASan + UBSan; a crash fails the test and leaves the input in the scratch folder's parent.
if(NOT QRECON_FUZZ)
  return()
endif()
set(QR_FUZZ_SECONDS 15 CACHE STRING "Seconds each fuzz harness runs in ctest")
add_custom_target(fuzz_all)
foreach(name safetensors config tokenizer llama2c calib_attrs ckpt_header)
  add_executable(fuzz_${name} fuzz/fuzz_${name}.c)
  target_link_libraries(fuzz_${name} PRIVATE qr_io)
  target_link_options(fuzz_${name} PRIVATE -fsanitize=fuzzer)
  add_dependencies(fuzz_all fuzz_${name})
  add_test(NAME fuzz.${name}
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/run.sh $<TARGET_FILE:fuzz_${name}>
                   ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/${name} ${QR_FUZZ_SECONDS})
  set_tests_properties(fuzz.${name} PROPERTIES LABELS fuzz TIMEOUT 120
    ENVIRONMENT "ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1;UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
endforeach()
