//go:build !linux

package control

// moveNoReplace gives the file at oldpath the name newpath unless newpath
// exists (an error matching fs.ErrExist). Renaming without replacing is
// not portable; a hard link never replaces.
func moveNoReplace(oldpath, newpath string) error {
	return linkNoReplace(oldpath, newpath)
}
