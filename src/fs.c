/*
** fs.c -- the few POSIX file operations a checkpointed sync needs and
** standard Lua lacks: fsync (data on disk before a checkpoint says so),
** truncate (cut an append-only file back to its checkpointed length),
** an exclusive lock per job (two runs of one job never interleave), and
** isatty (a progress line only on a terminal).
**
** Failures come back as nil, message (errno text), never raise: the sync
** layer turns them into error objects that name its files.
*/
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cv.h"

#define LOCK_MT "converse.Lock"

typedef struct cv_lock { int fd; } cv_lock;

static int push_errno(lua_State *L, const char *path) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", path, strerror(errno));
  return 2;
}

/* core.fsync(path) -> true | nil, msg: flush a file's (or a directory's)
** data and metadata to disk. fsync works on the inode, so it covers what
** any other descriptor (a Lua file, after :flush()) wrote. */
static int fs_fsync(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  int rc, saved;
  if (fd < 0) return push_errno(L, path);
  do rc = fsync(fd); while (rc != 0 && errno == EINTR);
  saved = errno;
  close(fd);
  errno = saved;
  /* Some file systems refuse fsync on a directory: nothing more to do there. */
  if (rc != 0 && errno != EINVAL && errno != EROFS) return push_errno(L, path);
  lua_pushboolean(L, 1);
  return 1;
}

/* core.truncate(path, size) -> true | nil, msg */
static int fs_truncate(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  lua_Number size = luaL_checknumber(L, 2);
  int rc;
  if (size < 0) return luaL_argerror(L, 2, "size must be >= 0");
  do rc = truncate(path, (off_t)size); while (rc != 0 && errno == EINTR);
  if (rc != 0) return push_errno(L, path);
  lua_pushboolean(L, 1);
  return 1;
}

/* core.isatty(fd) -> boolean (0 stdin, 1 stdout, 2 stderr) */
static int fs_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)) == 1);
  return 1;
}

/* ---- cv_lock: an flock held until released or collected ------------------ */

static cv_lock *check_lock(lua_State *L) {
  return (cv_lock *)luaL_checkudata(L, 1, LOCK_MT);
}

static int lock_release(lua_State *L) {
  cv_lock *k = check_lock(L);
  if (k->fd >= 0) {
    flock(k->fd, LOCK_UN);
    close(k->fd);
    k->fd = -1;
  }
  return 0;
}

static int lock_tostring(lua_State *L) {
  cv_lock *k = check_lock(L);
  lua_pushfstring(L, "converse.Lock (%s)", k->fd >= 0 ? "held" : "released");
  return 1;
}

/* core.lock(path) -> lock | nil, msg, "busy": an exclusive, non-blocking
** flock on path (created if absent). The userdata is created closed first,
** so an error after open() never leaks the descriptor. */
static int fs_lock(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  cv_lock *k = (cv_lock *)lua_newuserdatauv(L, sizeof *k, 0);
  k->fd = -1;
  luaL_setmetatable(L, LOCK_MT);
  k->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);   /* children never hold it */
  if (k->fd < 0) return push_errno(L, path);
  if (flock(k->fd, LOCK_EX | LOCK_NB) != 0) {
    int busy = errno == EWOULDBLOCK;
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", path, strerror(errno));
    close(k->fd);
    k->fd = -1;
    if (busy) { lua_pushliteral(L, "busy"); return 3; }
    return 2;
  }
  return 1;
}

void cv_fs_open(lua_State *L) {
  static const luaL_Reg meta[] = {
    {"__gc",       lock_release},
#if LUA_VERSION_NUM >= 504
    {"__close",    lock_release},
#endif
    {"__tostring", lock_tostring},
    {NULL, NULL}
  };
  static const luaL_Reg methods[] = {
    {"release",    lock_release},
    {NULL, NULL}
  };
  static const luaL_Reg funcs[] = {
    {"fsync",      fs_fsync},
    {"truncate",   fs_truncate},
    {"isatty",     fs_isatty},
    {"lock",       fs_lock},
    {NULL, NULL}
  };
  cv_class(L, LOCK_MT, meta, methods);
  luaL_setfuncs(L, funcs, 0);
}
