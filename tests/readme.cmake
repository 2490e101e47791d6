# readme.demo: the README's main command (tools/demo.sh) runs the whole pipeline end to end.
qr_add_script_test(NAME readme.demo SCRIPT readme/demo.sh TIMEOUT 900)
