/* Reading and writing whole files as bytes, the floor a files step is
 * measured against (io_floor.h). */
#include "io_floor.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *io_floor_scheme_name(io_floor_scheme s)
{
    static const char *names[IO_FLOOR_SCHEMES] = {"rename", "unlink-rename", "unlink", "truncate"};
    return s < IO_FLOOR_SCHEMES ? names[s] : "?";
}

int io_floor_read(const char *path, char **buf, size_t *len)
{
    *buf = NULL, *len = 0;
    int fd = open(path, O_RDONLY);
    struct stat sb;
    if (fd < 0)
        return -1;
    if (fstat(fd, &sb) != 0 || !(*buf = malloc(sb.st_size ? (size_t)sb.st_size : 1))) {
        close(fd);
        return -1;
    }
    size_t got = 0;
    while (got < (size_t)sb.st_size) {
        ssize_t r = read(fd, *buf + got, (size_t)sb.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    *len = got;
    return got == (size_t)sb.st_size ? 0 : -1;
}

static int write_fd(const char *path, int flags, const void *buf, size_t len)
{
    int fd = open(path, flags, 0644);
    if (fd < 0)
        return -1;
    const char *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            close(fd);
            return -1;
        }
        p += w, len -= (size_t)w;
    }
    return close(fd);
}

int io_floor_write(const char *path, const void *buf, size_t len, io_floor_scheme s)
{
    if (s == IO_FLOOR_TRUNCATE)
        return write_fd(path, O_WRONLY | O_CREAT | O_TRUNC, buf, len);
    if (s == IO_FLOOR_UNLINK) {
        if (unlink(path) != 0 && errno != ENOENT)
            return -1;
        return write_fd(path, O_WRONLY | O_CREAT | O_EXCL, buf, len);
    }
    /* the temporary's name as clred's (".NAME.PID.tmp" beside the target) */
    char tmp[4200];
    const char *slash = strrchr(path, '/');
    if (slash)
        snprintf(tmp, sizeof tmp, "%.*s/.%s.%ld.tmp", (int)(slash - path), path, slash + 1, (long)getpid());
    else
        snprintf(tmp, sizeof tmp, ".%s.%ld.tmp", path, (long)getpid());
    if (write_fd(tmp, O_WRONLY | O_CREAT | O_TRUNC, buf, len) != 0)
        return -1;
    if (s == IO_FLOOR_UNLINK_RENAME && unlink(path) != 0 && errno != ENOENT)
        return -1;
    return rename(tmp, path);
}
