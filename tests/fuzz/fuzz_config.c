/*
 * Fuzz target: the declarative config loader (YAML/JSON text -> validated tree).
 *
 * Any input must either load or be rejected with errors, without crashing, leaking or
 * running away (aliases, deep nesting, huge numbers). Seeds: tests/fuzz/corpus/config/.
 */
#include "turnpike/config.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tp_config *cfg = NULL;

    if (tp_config_load_string("fuzz", (const char *)data, size, NULL, &cfg) == 0)
        tp_config_free(cfg);
    return 0;
}
