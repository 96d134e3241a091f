/* replay.c - runs a fuzz target over every file of a corpus directory, plus a
 * fixed set of generated inputs, so fuzz targets run in every ctest without
 * libFuzzer. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    long n;
    int rc = -1;

    if (!f)
        return -1;
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
        fseek(f, 0, SEEK_SET) != 0)
        goto cleanup;
    buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n)
        goto cleanup;
    LLVMFuzzerTestOneInput(buf, (size_t)n);
    rc = 0;
cleanup:
    free(buf);
    fclose(f);
    return rc;
}

int main(int argc, char **argv)
{
    int files = 0;
    uint8_t buf[512];
    uint32_t seed = 12345;

    /* Pseudo-random inputs: the same every run. */
    for (int i = 0; i < 20000; i++) {
        size_t n = (size_t)(i % (int)sizeof buf);
        for (size_t j = 0; j < n; j++) {
            seed = seed * 1103515245u + 12345u;
            buf[j] = (uint8_t)(seed >> 16);
        }
        LLVMFuzzerTestOneInput(buf, n);
    }
    for (int a = 1; a < argc; a++) {
        DIR *d = opendir(argv[a]);
        struct dirent *e;
        if (!d)
            continue;
        while ((e = readdir(d)) != NULL) {
            char path[4096];
            if (e->d_name[0] == '.')
                continue;
            snprintf(path, sizeof path, "%s/%s", argv[a], e->d_name);
            if (replay_file(path) == 0)
                files++;
        }
        closedir(d);
    }
    printf("replayed %d corpus files and 20000 generated inputs\n", files);
    return 0;
}
