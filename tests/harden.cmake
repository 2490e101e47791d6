# harden: hostile and unlucky inputs (issue 16): crafted shards, non-finite values, outputs that
# would overwrite inputs, untrusted header limits, injected I/O failures. docs/hardening.md.
qr_add_test(NAME harden.shards SOURCES harden/shards.c LIBS qr_io)
foreach(case nocommand nan_weights escape tensor_count)
  qr_add_script_test(NAME harden.${case} SCRIPT harden/inputs.sh ARGS ${case} TIMEOUT 120)
endforeach()
