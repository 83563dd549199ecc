cat <<EOF > .git/config
x
EOF