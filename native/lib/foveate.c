#include "foveate.h"

#include "ggml-backend.h"
#include "llama-foveate.h"

#include <string.h>

int32_t foveate_abi_version(void) { return FOVEATE_ABI_VERSION; }

const char * foveate_llama_build_info(void) { return llama_foveate_build_info(); }

const char * foveate_backends(void) {
    static char buf[256];
    buf[0] = '\0';
    for (size_t i = 0; i < ggml_backend_reg_count(); i++) {
        const char * name = ggml_backend_reg_name(ggml_backend_reg_get(i));
        if (strlen(buf) + strlen(name) + 2 >= sizeof(buf)) break;
        if (i) strcat(buf, ",");
        strcat(buf, name);
    }
    return buf;
}
