/* commands.c: the subcommand table. A new subcommand is one jobs/cmd_<name>.c and one line here. */
#include "jobs/commands.h"

qr_status qr_cmd_version(int argc, char **argv);
qr_status qr_cmd_plan(int argc, char **argv);
qr_status qr_cmd_quantize(int argc, char **argv);
qr_status qr_cmd_synth(int argc, char **argv);
qr_status qr_cmd_inspect(int argc, char **argv);
qr_status qr_cmd_generate(int argc, char **argv);
qr_status qr_cmd_capture(int argc, char **argv);
qr_status qr_cmd_eval(int argc, char **argv);
qr_status qr_cmd_validate(int argc, char **argv);
qr_status qr_cmd_report(int argc, char **argv);
qr_status qr_cmd_export(int argc, char **argv);

const qr_command qr_commands[] = {
    {"synth", qr_cmd_synth, "write a seeded synthetic Llama-shaped safetensors model folder"},
    {"inspect", qr_cmd_inspect, "list a model's quantizable modules, other tensors and totals"},
    {"capture", qr_cmd_capture, "run text through the model and write HDF5 calibration shards"},
    {"plan", qr_cmd_plan, "print the layer slices of a distributed job, their cost and balance"},
    {"quantize", qr_cmd_quantize, "quantize a model over MPI ranks into one shared checkpoint"},
    {"validate", qr_cmd_validate, "run every module through the INT4 kernels and check it"},
    {"report", qr_cmd_report, "per-module error tables and plots of one or more checkpoints"},
    {"export", qr_cmd_export,
     "write a checkpoint as GGUF (llama.cpp) or compressed-tensors + PEFT"},
    {"eval", qr_cmd_eval, "NLL per token and perplexity of a model over a text"},
    {"generate", qr_cmd_generate, "greedy or sampled text generation, float or from a checkpoint"},
    {"version", qr_cmd_version, "print the version and the libraries qrecon was built with"},
};
const int qr_command_count = (int)(sizeof qr_commands / sizeof qr_commands[0]);
