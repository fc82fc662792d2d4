# ~/.bash_profile: bash login shells.
[ -f ~/.profile ] && . ~/.profile

# The autologin on tty1 starts the X session (DISPLAY :0, ~/.Xauthority).
if [ -z "$DISPLAY" ] && [ "$(tty)" = /dev/tty1 ]; then
	exec startx
fi
