# report.*: qrecon report on real checkpoints: numbers equal the stored attributes, plots render,
# progress lines.
qr_add_script_test(NAME report.real SCRIPT report/report_check.sh TIMEOUT 600)
