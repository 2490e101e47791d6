/* check_json.c: helper of the io_model.inspect script test. Parses `qrecon inspect --json` output
 * with jansson (so the test needs no Python), checks that it is self-consistent and has the
 * expected module count, and prints one line per module ("name d_out d_in input") so the script can
 * compare two models' module lists.
 *
 * usage: check_json FILE EXPECTED_MODULES; exit 0 when consistent, 1 with the reason otherwise. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *file, const char *why)
{
    fprintf(stderr, "%s: %s\n", file, why);
    return 1;
}

int main(int argc, char **argv)
{
    json_error_t err;
    json_t *root, *mods, *others, *tot, *m;
    const char *schema;
    long long want, quant = 0, all = 0;
    size_t i;
    char why[512];
    if (argc != 3) {
        fprintf(stderr, "usage: %s FILE EXPECTED_MODULES\n", argv[0]);
        return 1;
    }
    want = atoll(argv[2]);
    root = json_load_file(argv[1], JSON_REJECT_DUPLICATES, &err);
    if (!root) {
        snprintf(why, sizeof why, "not valid JSON (line %d: %s)", err.line, err.text);
        return fail(argv[1], why);
    }
    schema = json_string_value(json_object_get(root, "schema"));
    if (!schema || strcmp(schema, "qrecon.inspect") != 0) {
        return fail(argv[1], "schema is not \"qrecon.inspect\"");
    }
    mods = json_object_get(root, "modules");
    others = json_object_get(root, "other_tensors");
    tot = json_object_get(root, "totals");
    if (!json_is_array(mods) || !json_is_array(others) || !json_is_object(tot)) {
        return fail(argv[1], "modules, other_tensors or totals missing");
    }
    if ((long long)json_array_size(mods) != want ||
        json_integer_value(json_object_get(tot, "modules")) != want) {
        snprintf(why, sizeof why, "expected %lld modules, found %zu rows and totals.modules %lld",
                 want, json_array_size(mods),
                 (long long)json_integer_value(json_object_get(tot, "modules")));
        return fail(argv[1], why);
    }
    json_array_foreach(mods, i, m)
    {
        long long d_out = json_integer_value(json_object_get(m, "d_out"));
        long long d_in = json_integer_value(json_object_get(m, "d_in"));
        long long params = json_integer_value(json_object_get(m, "params"));
        if (d_out <= 0 || d_in <= 0 || params != d_out * d_in) {
            snprintf(why, sizeof why, "module %zu: params %lld != d_out %lld x d_in %lld", i,
                     params, d_out, d_in);
            return fail(argv[1], why);
        }
        quant += params;
        printf("%s %lld %lld %s\n", json_string_value(json_object_get(m, "name")), d_out, d_in,
               json_string_value(json_object_get(m, "input")));
    }
    json_array_foreach(others, i, m)
    {
        all += json_integer_value(json_object_get(m, "params"));
    }
    all += quant;
    if (json_integer_value(json_object_get(tot, "quantizable_params")) != quant ||
        json_integer_value(json_object_get(tot, "params")) != all) {
        snprintf(why, sizeof why,
                 "totals disagree with the rows (quantizable %lld vs %lld, all %lld vs %lld)",
                 (long long)json_integer_value(json_object_get(tot, "quantizable_params")), quant,
                 (long long)json_integer_value(json_object_get(tot, "params")), all);
        return fail(argv[1], why);
    }
    json_decref(root);
    return 0;
}
