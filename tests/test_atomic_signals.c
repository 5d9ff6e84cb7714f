/* Interrupted writes leave nothing behind: a process killed by SIGINT or
 * SIGTERM while writing removes its temporaries (clred_temp_files_remove_on_signals),
 * and a batch of outputs appears all together or not at all; what SIGKILL
 * leaves is removed by the next write of the same target. */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "internal.h"

static char dir[1024];

/* Files in dir (names starting with '.' included). */
static int count_files(int *temps)
{
    DIR *d = opendir(dir);
    int n = 0;
    *temps = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            n++;
            *temps += strstr(e->d_name, ".tmp") != NULL;
        }
    if (d)
        closedir(d);
    return n;
}

static void clear_dir(void)
{
    char cmd[2200];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", dir, dir);
    CHECK(system(cmd) == 0);
}

static void write_image(const char *name)
{
    clred_image img;
    CHECK_OK(clred_image_alloc(&img, 16, 8, 1, 1));
    for (size_t i = 0; i < 16 * 8; i++)
        img.sci[i] = (float)i;
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    CHECK_OK(clred_image_write(path, &img, 0));
    clred_image_free(&img);
}

/* Runs body in a child that then raises sig; the child must die of sig. */
static void in_child_raising(void (*body)(void), int sig, const char *what)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        clred_temp_files_remove_on_signals();
        body();
        raise(sig);
        _exit(99);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == sig, "%s: child status %#x", what, status);
}

static void open_and_write(void)
{
    char path[1200], tmp[1300];
    snprintf(path, sizeof path, "%s/half.txt", dir);
    FILE *f;
    if (clred_atomic_open(path, 0, tmp, sizeof tmp, &f) != CLRED_OK)
        _exit(98);
    fputs("half written", f);
    fflush(f);
    if (access(tmp, F_OK) != 0) /* the temporary exists before the signal */
        _exit(97);
}

static void batch_of_two(void)
{
    clred_write_batch_begin();
    write_image("a.fits");
    write_image("b.fits");
}

static void test_signals(void)
{
    int temps;
    clear_dir();
    in_child_raising(open_and_write, SIGTERM, "SIGTERM during a write");
    CHECK_MSG(count_files(&temps) == 0, "SIGTERM left %d files", count_files(&temps));
    clear_dir();
    in_child_raising(open_and_write, SIGINT, "SIGINT during a write");
    CHECK(count_files(&temps) == 0);
    clear_dir();
    in_child_raising(batch_of_two, SIGTERM, "SIGTERM during a batch");
    CHECK_MSG(count_files(&temps) == 0, "an interrupted batch left %d files", count_files(&temps));
}

static void test_batches(void)
{
    int temps;
    clear_dir();
    clred_write_batch_begin();
    write_image("a.fits");
    write_image("b.fits");
    CHECK(count_files(&temps) == 2 && temps == 2); /* both still temporaries */
    CHECK_OK(clred_write_batch_end(0));
    CHECK(count_files(&temps) == 0);

    clred_write_batch_begin();
    write_image("a.fits");
    write_image("b.fits");
    CHECK_OK(clred_write_batch_end(1));
    CHECK(count_files(&temps) == 2 && temps == 0);
    char path[1200];
    snprintf(path, sizeof path, "%s/b.fits", dir);
    clred_image img;
    CHECK_OK(clred_image_read(path, 0, &img));
    CHECK(img.width == 16 && img.height == 8 && img.sci[17] == 17.0f);
    clred_image_free(&img);

    /* Without a batch, a write is renamed at once. */
    clear_dir();
    write_image("c.fits");
    CHECK(count_files(&temps) == 1 && temps == 0);
}

static int exists(const char *name)
{
    char path[1300];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

static void touch(const char *name)
{
    char path[1300];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f)
        fclose(f);
}

/* SIGKILL cannot be handled: a child killed while writing leaves its
 * temporary, and the next write of the same target removes it; temporaries
 * of live processes and of other targets stay. */
static void test_sigkill_leftovers(void)
{
    int temps;
    clear_dir();
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        open_and_write();
        raise(SIGKILL);
        _exit(99);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    CHECK_MSG(count_files(&temps) == 1 && temps == 1, "SIGKILL should leave its temporary (%d files)",
              count_files(&temps));
    char live[200], dead_other[200];
    snprintf(live, sizeof live, ".half.txt.%ld.tmp", (long)getppid()); /* a running process's */
    snprintf(dead_other, sizeof dead_other, ".other.txt.%ld.tmp", (long)pid);
    touch(live);
    touch(dead_other);
    touch(".half.txt.12x.tmp"); /* not a PID: not ours */
    clred_text_output *t = NULL;
    char path[1200];
    snprintf(path, sizeof path, "%s/half.txt", dir);
    CHECK_OK(clred_text_open(path, 0, &t));
    fputs("whole\n", clred_text_stream(t));
    CHECK_OK(clred_text_close(t, 1));
    char killed[200];
    snprintf(killed, sizeof killed, ".half.txt.%ld.tmp", (long)pid);
    CHECK_MSG(!exists(killed), "the killed writer's temporary %s is still there", killed);
    CHECK(exists("half.txt") && exists(live) && exists(dead_other) && exists(".half.txt.12x.tmp"));
    CHECK(count_files(&temps) == 4 && temps == 3);

    /* A text output: refused over an existing file, discarded on request. */
    CHECK(clred_text_open(path, 0, &t) == CLRED_ERR_IO && strstr(clred_last_error(), "exists"));
    CHECK(t == NULL);
    snprintf(path, sizeof path, "%s/dropped.txt", dir);
    CHECK_OK(clred_text_open(path, 0, &t));
    fputs("never\n", clred_text_stream(t));
    CHECK_OK(clred_text_close(t, 0));
    CHECK(!exists("dropped.txt") && count_files(&temps) == 4);
}

/* A signal ignored before (nohup) stays ignored. */
static void test_ignored_signal(void)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGHUP, SIG_IGN);
        clred_temp_files_remove_on_signals();
        raise(SIGHUP);
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "an ignored SIGHUP killed the child (%#x)", status);
}

int main(void)
{
    snprintf(dir, sizeof dir, "%s/out", harness_tmpdir("test_atomic_signals"));
    test_signals();
    test_batches();
    test_ignored_signal();
    test_sigkill_leftovers();
    return harness_finish();
}
