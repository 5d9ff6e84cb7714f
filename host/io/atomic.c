/* The one way clred writes a file: to a temporary name beside the target,
 * then renamed into place, so an interrupted or failed write leaves nothing
 * under the target's name and never a half-written product. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

clred_status clred_atomic_temp_name(const char *path, char *tmp, size_t size)
{
    const char *slash = strrchr(path, '/');
    int n = slash ? snprintf(tmp, size, "%.*s/.%s.%ld.tmp", (int)(slash - path), path, slash + 1, (long)getpid())
                  : snprintf(tmp, size, ".%s.%ld.tmp", path, (long)getpid());
    if (n < 0 || (size_t)n >= size)
        return clred_fail(CLRED_ERR_USAGE, "%s: the path is too long", path);
    remove(tmp);
    return CLRED_OK;
}

clred_status clred_atomic_commit(const char *tmp, const char *path)
{
    if (rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        return clred_fail(CLRED_ERR_IO, "%s: cannot rename the finished file into place (%s)", path, strerror(e));
    }
    return CLRED_OK;
}

clred_status clred_atomic_open(const char *path, int overwrite, char *tmp, size_t size, FILE **f)
{
    *f = NULL;
    CLRED_TRY(clred_output_check(path, NULL, 0, overwrite));
    CLRED_TRY(clred_atomic_temp_name(path, tmp, size));
    *f = fopen(tmp, "w");
    if (!*f)
        return clred_fail(CLRED_ERR_IO, "%s: cannot write (%s)", path, strerror(errno));
    return CLRED_OK;
}

clred_status clred_atomic_close(FILE *f, const char *tmp, const char *path)
{
    int bad = ferror(f);
    bad |= fclose(f) != 0;
    if (bad) {
        remove(tmp);
        return clred_fail(CLRED_ERR_IO, "%s: writing failed (disk full?)", path);
    }
    return clred_atomic_commit(tmp, path);
}
